"""Ego planners (IDM, Frenet, policy adapter), PDM-style scores, fault, rank tests, study.

Every closed-loop rollout here uses one shape (batch 2, 8 object slots, 3000 map points,
91 steps), one environment and one vocabulary, so each planner compiles once for the
hand-built scenes and the generated scenarios of the end-to-end study.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.data.generator import GeneratorConfig, generate_batch
from spacer_jax.eval import bootstrap, pdm_terms, planner_study, planners
from spacer_jax.eval import planner_metrics as pm
from spacer_jax.eval.sim_agent_policies import (
    ConstantVelocityPolicy,
    LogReplayPolicy,
    default_env,
)
from spacer_jax.eval.sim_agents import SimAgentPolicy
from spacer_jax.sim import builders
from spacer_jax.sim.datatypes import TrafficLightStates
from spacer_jax.tokens.builder import primitive_vocabulary

T = 91
NUM_OBJECTS = 8
NUM_POINTS = 3000
ENV = default_env()
VOCAB = primitive_vocabulary(16)
STEPS = 40  # decision steps: 8 s
FAST = {'xla_backend_optimization_level': 0}  # compiles faster; these runs are short
START = 10


def _edges(centre: np.ndarray, half_width: float) -> list:
  """Road edges either side of a centreline ``(P, 2)``, road on each edge's left."""
  d = np.gradient(centre, axis=0)
  normal = np.stack([-d[:, 1], d[:, 0]], 1) / np.linalg.norm(d, axis=1, keepdims=True)
  right = centre - half_width * normal
  left = (centre + half_width * normal)[::-1]
  return [builders.Polyline(right, 15, 1), builders.Polyline(left, 15, 2)]


def _scene(tracks, centre, half_width=7.0, red_light=None, lanes=()):
  """A state from object tracks ``(x, y, yaw)`` each ``(T,)`` (object 0 = SDC, all
  4.5 x 2 m vehicles valid throughout), a road around ``centre``, optionally a light
  showing red throughout at the stop point ``red_light`` (x, y) and lane centres
  ``lanes`` (polylines ``(P, 2)`` in their driving direction)."""
  x, y, yaw = (np.stack([np.broadcast_to(tr[k], (T,)) for tr in tracks]) for k in range(3))
  n = len(tracks)
  traj = builders.trajectory_from_arrays(x, y, yaw, np.ones((n, T), bool),
                                         length=np.full(n, 4.5), width=np.full(n, 2.0),
                                         num_objects=NUM_OBJECTS)
  meta = builders.metadata_from_arrays(np.ones(n, np.int32), num_objects=NUM_OBJECTS,
                                       sdc_index=0)
  lane_lines = [builders.Polyline(lane, 2, 100 + i) for i, lane in enumerate(lanes)]
  road = builders.roadgraph_from_polylines(_edges(centre, half_width) + lane_lines,
                                           num_points=NUM_POINTS)
  lights = None
  if red_light is not None:
    lights = builders.traffic_lights_from_arrays(
        np.full((1, T), red_light[0]), np.full((1, T), red_light[1]),
        np.full((1, T), TrafficLightStates.STOP), np.ones((1, T), np.int32),
        np.ones((1, T), bool))
  return builders.make_state(traj, meta, road, log_traffic_light=lights)


TIME = np.arange(T) * 0.1
STRAIGHT = np.stack([np.linspace(-20, 300, 200), np.zeros(200)], 1)


def _straight_sdc(speed=10.0):
  return (speed * TIME, 0.0 * TIME, 0.0 * TIME)


def _parked(x, y=0.0):
  return (np.full(T, x), np.full(T, y), np.zeros(T))


def _arc_sdc(radius=80.0, speed=10.0):
  """A left bend of radius 80 m at 10 m/s, and its centreline continued straight."""
  theta = speed * TIME / radius
  track = (radius * np.sin(theta), radius * (1 - np.cos(theta)), theta)
  back = np.stack([np.linspace(-20, -1, 10), np.zeros(10)], 1)
  end, yaw = np.array([track[0][-1], track[1][-1]]), theta[-1]
  ahead = end + np.linspace(1, 250, 60)[:, None] * np.array([np.cos(yaw), np.sin(yaw)])
  centre = np.concatenate([back, np.stack(track[:2], 1), ahead])
  return track, centre


def _distance_to_polyline(points: np.ndarray, line: np.ndarray) -> np.ndarray:
  """Distance of each point ``(Q, 2)`` to the polyline ``(P, 2)``."""
  a, ab = line[:-1], np.diff(line, axis=0)
  rel = points[:, None] - a
  frac = np.clip(np.sum(rel * ab, -1) / np.sum(ab**2, -1), 0, 1)
  return np.min(np.linalg.norm(rel - frac[..., None] * ab, axis=-1), axis=1)


def _batch(*states):
  return builders.stack_states(states)


def _rollout(planner, params, state, policy=LogReplayPolicy()):
  """Closed loop with the study's compiled rollout (shared with the study test)."""
  fn = planner_study.planner_rollout_fn(policy, planner, env=ENV, vocab=VOCAB,
                                        num_steps=STEPS, jit_options=FAST)
  return fn(None, state, jax.random.PRNGKey(0), params)


def _sdc(result):
  sim = result.final_state.sim_trajectory
  return jax.tree_util.tree_map(lambda a: np.asarray(a[:, 0, START:START + 2 * STEPS + 1]),
                                sim)


def _sdc_overlaps(result):
  return np.asarray(result.metrics['overlap'].value[..., 0]).reshape(2, -1).max(-1)


# -- IDM --------------------------------------------------------------------------------


LIGHT_ARC = 60.0  # metres along the bend of the red light's stop point


@pytest.fixture(scope='module')
def idm_scenes():
  stop = _scene([_straight_sdc(), _parked(60.0)], STRAIGHT)
  arc, centre = _arc_sdc()
  theta = LIGHT_ARC / 80.0
  bend = _scene([arc], centre, red_light=(80.0 * np.sin(theta), 80.0 * (1 - np.cos(theta))))
  return _batch(stop, bend), centre


def test_idm_stops_behind_a_stopped_leader_and_at_a_red_light_on_the_route(idm_scenes):
  state, centre = idm_scenes
  result = _rollout(planners.IDMPlanner(), planners.IDMParams.create(), state)
  ego = _sdc(result)
  assert _sdc_overlaps(result).max() == 0.0
  # Scene 0: stops behind the car parked at x = 60 (gap = centre distance - 4.5 m).
  gap = 60.0 - ego.x[0] - 4.5
  assert gap.min() > 1.0, gap.min()
  assert gap[-1] < 4.0, gap[-1]  # it closes up to about s0 = 2 m, creeping in at the end
  assert ego.speed[0, -1] < 0.5, ego.speed[0, -1]
  assert np.all(np.diff(ego.x[0]) >= -1e-4)  # never reverses
  np.testing.assert_allclose(ego.y[0], 0.0, atol=1e-3)
  # Scene 1: along the bend it stays on the logged path and on the road, within the
  # bend's speed cap sqrt(3 m/s^2 * 80 m) = 15.5 m/s, and stops at the red light
  # 60 m along the bend (front bumper = arc + 2.25 m).
  off_path = _distance_to_polyline(np.stack([ego.x[1], ego.y[1]], 1), centre)
  assert off_path.max() < 0.05, off_path.max()
  assert np.asarray(result.metrics['offroad'].value[1, ..., 0]).max() == 0.0
  assert ego.speed[1].max() < 15.6, ego.speed[1].max()
  assert ego.speed[1, 20] > 9.0  # it approaches, rather than stopping at once
  front = 80.0 * np.unwrap(np.arctan2(ego.x[1], 80.0 - ego.y[1])) + 2.25
  assert LIGHT_ARC - 6.0 < front[-1] < LIGHT_ARC, front[-1]
  assert ego.speed[1, -1] < 0.5, ego.speed[1, -1]


def test_stop_rules_find_the_route_end_and_red_lights(idm_scenes):
  state, _ = idm_scenes
  state = state.replace(timestep=jnp.full((2,), START, jnp.int32))
  route = planners.sdc_route(state)
  ego = planners.ego_now(state)
  s = jnp.full((2, 1), 10.0)  # the SDC's arc at the start (10 m/s for 1 s)
  stops = jax.jit(planners.StopRules().stops)
  arcs, active = stops(state, route, s, ego)
  arcs, active = np.asarray(arcs), np.asarray(active)
  # Route end: the last logged point (arc 90 m) + half a car + 3 m.
  np.testing.assert_allclose(arcs[:, 0], 90.0 + 2.25 + 3.0, atol=1e-3)
  assert active[:, 0].all()
  # The red light 60 m along the bend applies in scene 1 only (scene 0 has no lights).
  np.testing.assert_allclose(arcs[1, 1], LIGHT_ARC, atol=0.05)
  np.testing.assert_array_equal(active[:, 1:].any(-1), [False, True])
  # Too close to stop at 6 m/s^2 (10 m/s needs 8.3 m): driven through.
  near = jnp.full((2, 1), LIGHT_ARC - 2.25 - 5.0)
  _, active = stops(state, route, near, ego)
  assert not bool(active[1, 1])
  _, active = planners.StopRules(red_lights=False, route_end=False).stops(state, route, s, ego)
  assert not np.asarray(active).any()


def test_idm_grid_spans_timid_to_aggressive(idm_scenes):
  grid = planners.idm_planner_grid(10)
  assert list(grid) == [f'idm_{i}' for i in range(10)]
  assert len({planner for planner, _ in grid.values()}) == 1  # one compile for the grid
  factors = [float(p.desired_speed_factor) for _, p in grid.values()]
  headways = [float(p.time_headway) for _, p in grid.values()]
  assert np.all(np.diff(factors) > 0) and np.all(np.diff(headways) < 0)
  # Odd n contains the spec's baseline exactly.
  base = planners.idm_planner_grid(3)['idm_1'][1]
  np.testing.assert_allclose([float(v) for v in jax.tree_util.tree_leaves(base)],
                             [1.0, 1.5, 2.0, 2.0, 3.0])
  state, _ = idm_scenes
  planner = grid['idm_0'][0]
  timid = _sdc(_rollout(planner, grid['idm_0'][1], state))
  bold = _sdc(_rollout(planner, grid['idm_9'][1], state))
  # The aggressive one drives faster and stops closer, behind the parked car and at the
  # red light.
  assert np.all(bold.speed.max(-1) > timid.speed.max(-1) + 1.0)
  assert (60.0 - timid.x[0, -1]) > (60.0 - bold.x[0, -1]) + 1.0
  assert bold.x[1, -1] > timid.x[1, -1]


def test_idm_params_and_planner_reject_bad_values():
  with pytest.raises(ValueError, match='time_headway'):
    planners.IDMParams.create(time_headway=0.0)
  with pytest.raises(ValueError, match='max_decel'):
    planners.IDMPlanner(max_decel=-1.0)
  with pytest.raises(ValueError, match='n must be'):
    planners.idm_planner_grid(0)


# -- Frenet -----------------------------------------------------------------------------


def test_frenet_avoids_a_static_obstacle():
  wide = _scene([_straight_sdc(), _parked(60.0)], STRAIGHT, half_width=7.0)
  narrow = _scene([_straight_sdc(), _parked(60.0)], STRAIGHT, half_width=3.0)
  planner, params = planners.frenet_planner_family()['nominal']
  result = _rollout(planner, params, _batch(wide, narrow))
  ego = _sdc(result)
  assert _sdc_overlaps(result).max() == 0.0
  assert np.asarray(result.metrics['offroad'].value[..., 0]).max() == 0.0
  # Wide road: swerves by more than a car width and passes the parked car, then slows
  # for the end of the route (last logged position x = 90 m, stop line 95.25 m).
  assert np.abs(ego.y[0]).max() > 2.0
  assert 60.0 + 10.0 < ego.x[0, -1] < 95.25 - 2.25
  assert np.all(np.diff(ego.speed[0, -20:]) < 0)
  # Narrow road (no room to pass on the road): stays in lane and stops short of it.
  assert np.abs(ego.y[1]).max() < 1.0
  assert ego.x[1, -1] < 60.0 - 4.5 and ego.speed[1, -1] < 2.0
  assert ego.speed[1, -1] < ego.speed[1, 0]


def test_frenet_stops_at_a_red_light_from_35_mps():
  """Stops are checked along the route at every sample (swept): even the assertive
  member at 35 m/s, 7 m per decision, stops before the red light's stop line."""
  road = np.stack([np.linspace(-20, 420, 260), np.zeros(260)], 1)
  fast = _scene([(35.0 * TIME, 0.0 * TIME, 0.0 * TIME)], road, red_light=(180.0, 0.0))
  faster = _scene([(38.0 * TIME, 0.0 * TIME, 0.0 * TIME)], road, red_light=(200.0, 0.0))
  planner, params = planners.frenet_planner_family()['assertive']
  ego = _sdc(_rollout(planner, params, _batch(fast, faster)))
  front = ego.x + 2.25
  assert front[0].max() <= 180.0 + 0.5 and front[1].max() <= 200.0 + 0.5
  assert ego.speed[:, -1].max() < 3.0  # Nearly stopped at 8 s, short of the line.
  assert ego.x[0, 1] > 35.0  # It was driving at speed to begin with.


def test_frenet_family_and_candidates():
  family = planners.frenet_planner_family()
  assert list(family) == ['cautious', 'nominal', 'assertive']
  speeds = [float(p.desired_speed_factor) for _, p in family.values()]
  margins = [float(p.safety_margin) for _, p in family.values()]
  assert speeds == sorted(speeds) and margins == sorted(margins, reverse=True)
  planner = planners.FrenetPlanner()
  assert planner.num_candidates == 5 * 10
  with pytest.raises(ValueError, match='speed_fractions'):
    planners.FrenetPlanner(speed_fractions=(-0.5, 1.0))


def test_frenet_quintic_meets_its_boundary_conditions():
  c = planners._Candidates(
      s0=jnp.zeros(1), d0=jnp.array([0.5]), slope0=jnp.array([0.1]),
      curv0=jnp.array([0.02]), v0=jnp.array([5.0]), offset=jnp.array([3.5]),
      target_speed=jnp.array([5.0]), accel=jnp.array([0.0]),
      lateral_length=jnp.array([20.0]))
  sigma = jnp.array([[0.0, 1e-3, 20.0 - 1e-3, 20.0, 30.0]])
  lateral = jax.jit(planners.FrenetPlanner._lateral)
  d, slope, curv = (np.asarray(a[0]) for a in lateral(c, sigma))
  np.testing.assert_allclose([d[0], slope[0], curv[0]], [0.5, 0.1, 0.02], atol=1e-6)
  np.testing.assert_allclose([d[2], slope[2], curv[2]], [3.5, 0.0, 0.0], atol=1e-3)
  np.testing.assert_allclose(d[3:], 3.5, atol=1e-6)
  # Constant acceleration to the target speed, then constant speed.
  c = c.replace(target_speed=jnp.array([9.0]), accel=jnp.array([2.0]))
  s, v = jax.jit(planners.FrenetPlanner._longitudinal)(c, jnp.array([1.0, 2.0, 3.0]))
  np.testing.assert_allclose(np.asarray(v[0]), [7.0, 9.0, 9.0], atol=1e-6)
  np.testing.assert_allclose(np.asarray(s[0]), [6.0, 14.0, 23.0], atol=1e-5)


# -- PolicyEgo --------------------------------------------------------------------------


class _CountingPolicy(ConstantVelocityPolicy):
  """Constant velocity whose carry counts the observed steps."""

  def init(self, params, state, rng):
    return jnp.zeros((), jnp.int32)

  def observe(self, params, carry, prev_state, state):
    return carry + 1


def test_policy_ego_returns_the_sdc_row_and_observes_between_plans(idm_scenes):
  state, _ = idm_scenes
  state = jax.tree_util.tree_map(lambda a: a[1], state)  # the bend, unbatched
  state = state.replace(timestep=jnp.int32(START))
  policy = _CountingPolicy()
  assert isinstance(policy, SimAgentPolicy)
  ego = planners.PolicyEgo(policy)
  assert ego.name == 'ego_constant_velocity'
  key = jax.random.PRNGKey(0)
  carry = ego.init(None, state, key)
  carry, row = ego.plan(None, carry, state, key)
  assert int(carry.policy) == 0  # nothing executed before the first plan
  full = policy.propose(None, 0, state, key)
  np.testing.assert_allclose(np.asarray(row.poses), np.asarray(full.poses[0:1]))
  assert row.poses.shape == (1, 2, 3) and row.velocities.shape == (1, 2, 2)
  assert row.valid.shape == (1,)
  carry, _ = ego.plan(None, carry, state, key)
  assert int(carry.policy) == 1
  # In closed loop, log replay as the ego (validity per sub-step) reproduces the log.
  batch, _ = idm_scenes
  result = _rollout(planners.PolicyEgo(LogReplayPolicy()), None, batch)
  np.testing.assert_array_equal(np.asarray(result.final_state.sim_trajectory.x),
                                np.asarray(batch.log_trajectory.x))
  with pytest.raises(TypeError, match='SimAgentPolicy'):
    planners.PolicyEgo(object())


# -- fault attribution ------------------------------------------------------------------


def _box(x, y, yaw=0.0, length=4.5, width=2.0):
  return (x, y, length, width, yaw)


FAULT_CASES = {
    # name: (i before, i at contact, j before, j at contact, i at fault, j at fault)
    'rear_end': (_box(-1.0, 0.0), _box(0.0, 0.0), _box(4.0, 0.0), _box(4.3, 0.0), True,
                 False),
    't_bone': (_box(-1.0, 0.0), _box(0.0, 0.0), _box(3.1, -0.5, np.pi / 2),
               _box(3.1, 0.0, np.pi / 2), True, False),
    'parked_hit': (_box(-1.0, 0.0), _box(0.0, 0.0), _box(4.3, 0.0), _box(4.3, 0.0),
                   True, False),
    'stopped_rear_ended': (_box(0.0, 0.0), _box(0.0, 0.0), _box(-5.5, 0.0),
                           _box(-4.3, 0.0), False, True),
    'head_on': (_box(-1.0, 0.0), _box(0.0, 0.0), _box(5.5, 0.0, np.pi),
                _box(4.3, 0.0, np.pi), True, True),
    'side_swipe': (_box(-1.0, -0.1), _box(0.0, 0.0), _box(-1.0, 1.95), _box(0.0, 1.95),
                   True, False),
}


def test_contact_fault_known_answers():
  names = sorted(FAULT_CASES)
  cases = [FAULT_CASES[n] for n in names]
  column = lambda k, f: jnp.asarray([c[k][f] for c in cases], jnp.float32)
  pre = tuple(column(k, f) for k in (0, 2) for f in range(5))
  post = tuple(column(k, f) for k in (1, 3) for f in range(5))
  margins = jax.jit(pm.pair_margins)
  assert np.all(np.asarray(jnp.min(margins(*pre), -1)) <= 0)  # apart before
  assert np.all(np.asarray(jnp.min(margins(*post), -1)) > 0)  # in contact
  fault = jax.jit(pm.contact_fault)
  yes = jnp.ones(len(cases), bool)
  i_fault, j_fault = fault(pre, post, yes)
  got = dict(zip(names, zip(np.asarray(i_fault).tolist(), np.asarray(j_fault).tolist())))
  assert got == {n: (c[4], c[5]) for n, c in zip(names, cases)}
  # Swapping the parties swaps the verdict.
  j_fault2, i_fault2 = fault(pre[5:] + pre[:5], post[5:] + post[:5], yes)
  np.testing.assert_array_equal(np.asarray(i_fault2), np.asarray(i_fault))
  np.testing.assert_array_equal(np.asarray(j_fault2), np.asarray(j_fault))
  # Unknown velocities (no step before contact): nobody is at fault.
  i_fault, j_fault = fault(pre, post, ~yes)
  assert not np.any(np.asarray(i_fault)) and not np.any(np.asarray(j_fault))


def test_first_contacts_finds_the_first_overlap_and_the_fault():
  # Object 0 (10 m/s) closes on object 1 (parked 20 m ahead) and touches at step 16;
  # object 2 is parked far away, object 3 is padding placed on top of object 1.
  t = 30
  x = np.stack([10.0 * np.arange(t) * 0.1, np.full(t, 20.0), np.full(t, -50.0),
                np.full(t, 20.0)])
  valid = np.ones((4, t), bool)
  valid[3] = False
  traj = builders.trajectory_from_arrays(x, np.zeros((4, t)), np.zeros((4, t)), valid,
                                         length=np.full(4, 4.5), width=np.full(4, 2.0))
  c = jax.jit(pm.first_contacts, static_argnums=2)(traj, jnp.array([0, 1]), 5)
  # Contact when 20 - x0 < 4.5, i.e. x0 > 15.5 m: step 16.
  np.testing.assert_array_equal(np.asarray(c.collided), [[0, 1, 0, 0], [1, 0, 0, 0]])
  assert int(c.step[0, 1]) == 16 and int(c.step[1, 0]) == 16
  assert bool(c.row_at_fault[0, 1]) and not bool(c.other_at_fault[0, 1])
  assert not bool(c.row_at_fault[1, 0]) and bool(c.other_at_fault[1, 0])


def _cut_in_tracks(t=45, swerving_ego=False):
  """Object 0 (the ego) at 10 m/s along y = 0; object 1 at 8 m/s, 12 m ahead in the next
  lane (y = 3.5), moves into the ego's lane over steps 25-33: the ego's front then hits
  its rear. With ``swerving_ego`` object 1 instead stays parked in the next lane and the
  ego steers into it (no cut-in: the ego is at fault)."""
  s = np.arange(t)
  ego_x, ego_y = 10.0 * s * 0.1, np.zeros(t)
  other_x, other_y = 12.0 + 8.0 * s * 0.1, 3.5 * (1 - np.clip((s - 25) / 8, 0, 1))
  if swerving_ego:
    other_x, other_y = np.full(t, 30.0), np.full(t, 3.5)
    ego_y = 3.5 * np.clip((s - 15) / 10, 0, 1)
  x, y = np.stack([ego_x, other_x]), np.stack([ego_y, other_y])
  yaw = np.stack([np.arctan2(np.gradient(y[0]), np.gradient(x[0])), np.zeros(t)])
  return builders.trajectory_from_arrays(x, y, yaw, np.ones((2, t), bool),
                                         length=np.full(2, 4.5), width=np.full(2, 2.0))


def test_a_cut_in_ahead_puts_the_fault_on_the_cutter():
  first = jax.jit(pm.first_contacts, static_argnums=(2, 4))
  c = first(_cut_in_tracks(), jnp.array([0, 1]), 0, None, pm.PDMConfig())
  assert bool(c.collided[0, 1])
  # The cutter is at fault, the ego it cut off is not: a false positive for the ego.
  assert not bool(c.row_at_fault[0, 1]) and bool(c.other_at_fault[0, 1])
  assert bool(c.row_at_fault[1, 0]) and not bool(c.other_at_fault[1, 0])
  # Without the cut-in rule the geometry alone blames the ego's front.
  plain = first(_cut_in_tracks(), jnp.array([0, 1]), 0, None, pm.PDMConfig(cut_in_steps=0))
  assert bool(plain.row_at_fault[0, 1]) and not bool(plain.other_at_fault[0, 1])
  # An ego steering into a parked car is no cut-in: the ego stays at fault.
  swerve = first(_cut_in_tracks(swerving_ego=True), jnp.array([0, 1]), 0, None,
                 pm.PDMConfig())
  assert bool(swerve.collided[0, 1])
  assert bool(swerve.row_at_fault[0, 1]) and not bool(swerve.other_at_fault[0, 1])


# -- scores ----------------------------------------------------------------------------


def test_pdm_score_and_progress_ratio_arithmetic():
  assert float(pm.pdm_score(1.0, 1.0, 1.0, 0.5, 0.0)) == pytest.approx((5 + 2.5) / 12)
  assert float(pm.pdm_score(0.0, 1.0, 1.0, 1.0, 1.0)) == 0.0
  assert float(pm.pdm_score(1.0, 0.0, 1.0, 1.0, 1.0)) == 0.0
  # Driving direction (DDC) and making progress (MP) multiply, as in nuPlan.
  config = pm.PDMConfig()
  assert float(pm.pdm_score(1.0, 1.0, 1.0, 1.0, 1.0, config, 0.5, 1.0)) == 0.5
  assert float(pm.pdm_score(1.0, 1.0, 1.0, 1.0, 1.0, config, 1.0, 0.0)) == 0.0
  np.testing.assert_array_equal(np.asarray(pm.making_progress(jnp.array([0.19, 0.2]))),
                                [0.0, 1.0])
  with pytest.raises(ValueError, match='direction_violation'):
    pm.PDMConfig(direction_compliance=3.0, direction_violation=2.0)
  ep = pm.progress_ratio(jnp.array([30.0, 60.0, -3.0, 0.0]), jnp.array([40.0, 40.0, 40.0, 4.0]))
  np.testing.assert_allclose(np.asarray(ep), [0.75, 1.0, 0.0, 1.0])
  with pytest.raises(ValueError, match='comfort_window'):
    pm.PDMConfig(comfort_window=0)


def test_comfort_known_answers():
  t = np.arange(81) * 0.1
  th = 0.4 * t
  zero = np.zeros(81)
  # Cruise at 10 m/s; braking at 6 m/s^2; a circle of radius 25 m at 10 m/s (lateral
  # acceleration 4 m/s^2, yaw rate 0.4 rad/s).
  x = np.stack([10 * t, 20 * t - 3 * t**2, 25 * np.sin(th)])
  y = np.stack([zero, zero, 25 * (1 - np.cos(th))])
  yaw = np.stack([zero, zero, th])
  ext = jax.jit(lambda x, y, yaw: (lambda e: (e, pm.is_comfortable(e)))(
      pm.comfort_extremes(x, y, yaw)))(jnp.asarray(x), jnp.asarray(y), jnp.asarray(yaw))
  ext, ok = jax.tree_util.tree_map(np.asarray, ext)
  np.testing.assert_array_equal(ok, [True, False, True])
  np.testing.assert_allclose(ext['max_lon_accel'][0], 0.0, atol=1e-3)
  np.testing.assert_allclose(ext['min_lon_accel'][1], -6.0, atol=0.05)
  np.testing.assert_allclose(ext['max_abs_lat_accel'][2], 4.0, atol=0.05)
  np.testing.assert_allclose(ext['max_abs_yaw_rate'][2], 0.4, atol=1e-3)
  with pytest.raises(ValueError, match='at least 16 steps'):
    pm.comfort_extremes(jnp.zeros(10), jnp.zeros(10), jnp.zeros(10))


_offroad_flags = jax.jit(pm.ego_offroad_flags, static_argnums=(1, 2, 3))


def _score_logs(*states):
  """Scores the logs of the scenes as if simulated (the study's compiled scorer)."""
  state = builders.stack_states(states)
  state = state.replace(sim_trajectory=state.log_trajectory,
                        timestep=jnp.full(len(states), START + 2 * STEPS, jnp.int32))
  end = START + 2 * STEPS
  return pm.episode_scorer(START, end, jit_options=FAST)(
      state, _offroad_flags(state, START + 1, end, pm.PDMConfig().drivable_tolerance))


def test_pdm_scores_of_known_episodes():
  # The SDC drives through a parked car: at fault, score 0.
  crash = _scene([_straight_sdc(), _parked(60.0)], STRAIGHT)
  # The SDC drifts off a 7 m wide road.
  drift = (10 * TIME, np.clip(TIME - 2.0, 0, None) * 2.0, np.zeros(T))
  offroad = _scene([drift], STRAIGHT, half_width=3.5)
  # Perfect following on a free road.
  perfect = _scene([_straight_sdc()], STRAIGHT)
  # The SDC stops at x = 30 (t = 4 s); a car behind at 12 m/s runs into it at 4.6 s.
  stop = (np.minimum(10 + 5 * TIME, 30.0), np.zeros(T), np.zeros(T))
  rear = (12 * TIME - 20.0, np.zeros(T), np.zeros(T))
  rear_ended = _scene([stop, rear], STRAIGHT)
  a = _score_logs(crash, offroad)
  b = _score_logs(perfect, rear_ended)
  get = lambda s, f: np.asarray(getattr(s, f))
  np.testing.assert_array_equal(get(a, 'score'), [0.0, 0.0])
  np.testing.assert_array_equal(get(a, 'no_at_fault_collision'), [0.0, 1.0])
  np.testing.assert_array_equal(get(a, 'drivable_area_compliance'), [1.0, 0.0])
  np.testing.assert_array_equal(get(a, 'at_fault_count'), [1, 0])
  np.testing.assert_array_equal(get(a, 'ttc_within_bound'), [0.0, 1.0])
  # Perfect following scores 1 on every term; EP compares with the log itself.
  for f in ('score', 'no_at_fault_collision', 'drivable_area_compliance',
            'ttc_within_bound', 'ego_progress', 'comfort'):
    assert get(b, f)[0] == pytest.approx(1.0), f
  np.testing.assert_allclose(get(b, 'progress')[0], 80.0, atol=0.01)
  # Rear-ended while stopped: a false-positive collision, not the ego's fault.
  assert get(b, 'ego_collision')[1] and not get(b, 'at_fault_collision')[1]
  assert get(b, 'false_positive_count')[1] == 1
  assert get(b, 'no_at_fault_collision')[1] == 1.0
  # EP against a better reference: half the progress of a 160 m reference.
  half = b.with_reference_progress(jnp.array([160.0, 160.0]))
  np.testing.assert_allclose(get(half, 'ego_progress')[0], 0.5, atol=1e-4)
  np.testing.assert_allclose(get(half, 'score')[0], (5 + 2.5 + 2) / 12, atol=1e-4)
  # Making progress: under 20% of the reference zeroes the score.
  slow = b.with_reference_progress(jnp.array([500.0, 500.0]))
  assert get(slow, 'making_progress')[0] == 0.0 and get(slow, 'score')[0] == 0.0
  assert get(a, 'making_progress').tolist() == [1.0, 1.0]


def _crossing_stop_short(t_stop=4.0, x=40.0):
  """A car crossing the SDC's road at x (heading +y) at 8 m/s that brakes at 8 m/s^2 and
  stops with its front 0.25 m short of the SDC's lane (no contact)."""
  y = np.where(TIME < t_stop - 1.0, -7.5 - 8.0 * (t_stop - 1.0 - TIME),
               -3.5 - 4.0 * np.clip(t_stop - TIME, 0, None) ** 2)
  return (np.full(T, x), y, np.full(T, np.pi / 2))


def test_ttc_sees_objects_crossing_the_ego_path_not_those_behind():
  # WOSAC's TTC follows one leader in the lane; nuPlan's projects every object ahead.
  crossing = _scene([_straight_sdc(), _crossing_stop_short()], STRAIGHT)
  stop = (np.minimum(10 + 5 * TIME, 30.0), np.zeros(T), np.zeros(T))
  rear = (12 * TIME - 20.0, np.zeros(T), np.zeros(T))
  rear_ended = _scene([stop, rear], STRAIGHT)
  s = _score_logs(crossing, rear_ended)
  ttc = np.asarray(s.min_ttc)
  assert not np.asarray(s.ego_collision)[0]  # a near miss, no contact
  assert 0.2 < ttc[0] < 0.95 and np.asarray(s.ttc_within_bound)[0] == 0.0
  # The follower that hits the stopped ego is behind it: not the ego's TTC.
  assert np.asarray(s.ttc_within_bound)[1] == 1.0
  # The same projection by hand at t = 3.5 s, with each velocity the last step's
  # displacement: the SDC's box (x 35 + 10 tau +- 2.25, y +- 1) and the car's (x 40 +- 1,
  # y -4.5 + 4.4 tau +- 2.25, from y = -4.94 at 3.4 s) overlap from tau = 0.284 s: the
  # first 0.1 s projection step after it is 0.3 s.
  t = 35
  window = lambda a: jnp.asarray(np.stack(a)[None, :, t - 1:t + 1])
  tracks = [_straight_sdc(), _crossing_stop_short()]
  xs, ys, yaws = (window([tr[k] for tr in tracks]) for k in range(3))
  one = pdm_terms.ego_time_to_collision(
      xs, ys, jnp.full_like(xs, 4.5), jnp.full_like(xs, 2.0), yaws, jnp.ones(xs.shape, bool),
      jnp.zeros(1, jnp.int32), horizon=3.0, time_step=0.1, dt=0.1, stopped_speed=0.05,
      no_collision=3.0)
  assert float(one[0, 0]) == pytest.approx(0.3, abs=1e-5)


def test_driving_direction_against_traffic():
  lane = STRAIGHT  # One lane centre driving +x.
  back = (200.0 - 10.0 * TIME, np.zeros(T), np.full(T, np.pi))
  creep_back = (200.0 - 4.0 * TIME, np.zeros(T), np.full(T, np.pi))
  own_lane = _straight_sdc()
  opposite = np.stack([np.linspace(300, -20, 200), np.full(200, 3.5)], 1)
  s = _score_logs(_scene([back], STRAIGHT, lanes=[lane]),
                  _scene([creep_back], STRAIGHT, lanes=[lane]),
                  _scene([own_lane], STRAIGHT, lanes=[lane, opposite]),
                  _scene([back], STRAIGHT))  # No lane centres: never against traffic.
  np.testing.assert_allclose(np.asarray(s.against_traffic), [10.0, 4.0, 0.0, 0.0], atol=0.05)
  np.testing.assert_array_equal(np.asarray(s.driving_direction_compliance),
                                [0.0, 0.5, 1.0, 1.0])
  np.testing.assert_array_equal(np.asarray(s.score)[[0, 2]], [0.0, 1.0])


def test_drivable_area_tolerance_is_nuplans_0_3_m():
  # Road edges at y = +-3.5; the SDC is 2 m wide, so its left corners sit 0.1 / 0.5 m
  # out. The distance is to the nearest edge point (Waymax's rule; points every 0.5 m),
  # at most sqrt(0.1^2 + 0.25^2) = 0.27 m for the first.
  inside = _scene([(10 * TIME, np.full(T, 2.6), np.zeros(T))], STRAIGHT, half_width=3.5)
  outside = _scene([(10 * TIME, np.full(T, 3.0), np.zeros(T))], STRAIGHT, half_width=3.5)
  s = _score_logs(inside, outside)
  np.testing.assert_array_equal(np.asarray(s.drivable_area_compliance), [1.0, 0.0])


# -- rank correlations ------------------------------------------------------------------


def test_rank_correlations_against_hand_computations():
  np.testing.assert_array_equal(pm.rankdata([3, 1, 3, 2]), [3.5, 1.0, 3.5, 2.0])
  a, b = [1, 2, 3, 4, 5], [5, 6, 7, 8, 7]
  # Ranks of b: 1, 2, 3.5, 5, 3.5; centred products sum to 8, squares 10 and 9.5.
  assert pm.spearman(a, b) == pytest.approx(8 / np.sqrt(95))
  # Pairs: 8 concordant, 1 discordant, 1 tied in b: (8 - 1) / sqrt(10 * 9).
  assert pm.kendall_tau(a, b) == pytest.approx(7 / np.sqrt(90))
  assert pm.spearman(a, a[::-1]) == pytest.approx(-1.0)
  assert pm.kendall_tau(a, a[::-1]) == pytest.approx(-1.0)
  assert np.isnan(pm.spearman([1, 1, 1], [1, 2, 3]))
  with pytest.raises(ValueError, match='equal length'):
    pm.kendall_tau([1, 2], [1, 2, 3])
  stats = pytest.importorskip('scipy.stats')
  rng = np.random.default_rng(0)
  for _ in range(5):
    x, y = rng.integers(0, 5, 12), rng.integers(0, 5, 12)
    assert pm.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert pm.kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)


def test_rank_correlations_leave_out_planners_without_a_score():
  a = [0.9, float('nan'), 0.5, 0.7, 0.1]
  b = [0.8, 0.95, 0.4, 0.6, 0.3]
  keep = [0, 2, 3, 4]
  assert pm.spearman(a, b) == pytest.approx(pm.spearman([a[i] for i in keep],
                                                        [b[i] for i in keep]))
  assert pm.kendall_tau(a, b) == pytest.approx(1.0)
  assert np.isnan(pm.kendall_tau([1.0, float('nan')], [1.0, 2.0]))


# -- the study end to end ---------------------------------------------------------------


def test_planner_study_end_to_end():
  scenarios = generate_batch(range(2), GeneratorConfig(num_objects=NUM_OBJECTS,
                                                       num_roadgraph_points=NUM_POINTS))
  chosen = {'idm_bold': planners.idm_planner_grid(10)['idm_9'],
            'frenet': planners.frenet_planner_family()['nominal']}
  modes = {'log_replay': (LogReplayPolicy(), None), 'log_replay_b': (LogReplayPolicy(), None)}
  study = planner_study.run_planner_study(chosen, modes, scenarios, jax.random.PRNGKey(3),
                                          env=ENV, vocab=VOCAB, num_steps=STEPS,
                                          rollouts=2, deterministic_modes=['log_replay'],
                                          bootstrap_resamples=200, jit_options=FAST)
  assert study.planners == list(chosen) and study.modes == list(modes)
  for mode in modes:
    assert sorted(study.rankings[mode]) == sorted(chosen)
    for name, row in study.table[mode].items():
      assert row['episodes'] == study.rollouts[mode] * 2
      lo, hi = study.intervals[mode][name]['score']
      assert lo <= row['score'] + 1e-9 and row['score'] <= hi + 1e-9
      assert 0.0 <= row['score'] <= 1.0
      assert 0.0 <= row['at_fault_collision_rate'] <= 1.0
      assert row['false_positive_collisions'] >= 0
    scores = [study.table[mode][n]['score'] for n in study.rankings[mode]]
    assert scores == sorted(scores, reverse=True)
  # Identical modes: identical tables, rank correlation 1 (NaN only if all scores tie);
  # the deterministic mode ran once, the other twice (same episodes twice).
  assert study.rollouts == {'log_replay': 1, 'log_replay_b': 2}
  strip = lambda t: {n: {k: v for k, v in r.items()
                         if k not in ('episodes', 'false_positive_collisions')}
                     for n, r in t.items()}
  assert strip(study.table['log_replay']) == strip(study.table['log_replay_b'])
  assert study.intervals['log_replay'] == study.intervals['log_replay_b']
  (corr,) = study.correlations
  assert corr['modes'] == ('log_replay', 'log_replay_b')
  assert np.isnan(corr['spearman']) or corr['spearman'] == pytest.approx(1.0)
  for mode in modes:
    eps = {n: {k: np.asarray(v) for k, v in e.items()} for n, e in study.episodes[mode].items()}
    # EP's reference: the log's progress or the best of a planner with NC * DAC = 1.
    want = eps['frenet']['log_progress']
    for e in eps.values():
      ok = e['no_at_fault_collision'] * e['drivable_area_compliance'] > 0
      want = np.maximum(want, np.where(ok, e['progress'], -np.inf))
    for name, e in eps.items():
      assert len(e['score']) == study.rollouts[mode] * 2
      np.testing.assert_allclose(e['reference_progress'], want, rtol=1e-6)
      np.testing.assert_allclose(e['ego_progress'], np.clip(
          np.where(want < 5.0, 1.0, e['progress'] / want), 0, 1), rtol=1e-5, atol=1e-6)
      assert study.table[mode][name]['score'] == pytest.approx(e['score'].mean())
      assert study.table[mode][name]['false_positive_collisions'] == e[
          'false_positive_count'].sum()
  out = study.to_dict()
  assert set(out) == {'planners', 'modes', 'table', 'rankings', 'correlations', 'episodes',
                      'intervals', 'interval_level', 'rollouts'}
  assert 'spearman_ci' in out['correlations'][0]
  json.dumps(out)
  md = study.to_markdown()
  assert '### Sim agents: log_replay' in md and 'Spearman' in md and 'idm_bold' in md


# -- bootstrap ---------------------------------------------------------------------------


def test_scene_bootstrap_against_a_direct_computation():
  rng = np.random.default_rng(1)
  values = rng.normal(size=(3, 5))  # 3 rollouts x 5 scenes
  valid = rng.random((3, 5)) > 0.3
  draws = bootstrap.scene_resamples(5, 50, seed=2)
  assert draws.shape == (50, 5) and draws.min() >= 0 and draws.max() < 5
  sums, counts = bootstrap.per_scene_sums(values, valid)
  means = bootstrap.resampled_means(sums, counts, draws)
  for b in range(50):
    chosen_values = np.concatenate([values[:, k][valid[:, k]] for k in draws[b]])
    want = chosen_values.mean() if chosen_values.size else np.nan
    np.testing.assert_allclose(means[b], want, rtol=1e-12, equal_nan=True)
  assert bootstrap.percentile_interval(np.full(10, 0.25)) == (0.25, 0.25)
  lo, hi = bootstrap.percentile_interval(np.arange(101.0), level=0.9)
  assert (lo, hi) == pytest.approx((5.0, 95.0))
  assert np.isnan(bootstrap.percentile_interval([np.nan])[0])
  with pytest.raises(ValueError, match='level'):
    bootstrap.percentile_interval([1.0], level=1.0)
  with pytest.raises(ValueError, match='rollouts, scenes'):
    bootstrap.per_scene_sums(np.zeros(3), np.ones(3, bool))
