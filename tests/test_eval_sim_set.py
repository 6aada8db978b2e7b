"""The WOSAC sim set in closed loop and in realism scoring, and the per-type rates.

Every object valid at the current step (index 10) is simulated for all 80 future steps
(log replay extrapolates an object whose log ends); objects absent at the current step
are no partners in the interaction features; collision and off-road rates per agent
type, and off-road without the agents already off road in the log. Hand-built scenes of
8 object slots on a straight two-lane road; every expectation is counted by hand.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from factories import small_realism_options

from spacer_jax.eval import aggregate, sim_agents
from spacer_jax.eval import sim_agent_policies as policies
from spacer_jax.eval.realism import compute_features, score_features
from spacer_jax.sim import builders
from spacer_jax.sim.config import EnvConfig
from spacer_jax.sim.datatypes import ObjectType, Trajectory
from spacer_jax.sim.dynamics import get_dynamics_model
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.tokens.builder import primitive_vocabulary

T = 91
R = 2
STEPS = np.arange(T)
V, P, C = ObjectType.VEHICLE, ObjectType.PEDESTRIAN, ObjectType.CYCLIST
OPTIONS = small_realism_options()
BARE = MultiAgentEnvironment(get_dynamics_model('delta_global'),
                             EnvConfig(metrics=(), rewards={}, build_road_edge_index=False))
FAST = {'xla_backend_optimization_level': 0}


def _scene(objects, modeled):
  """A state from ``objects``: ``(type, x (T,), y (T,), yaw, vel_x, valid (T,), length,
  width)`` rows; object 0 is the SDC. Road edges at y = -3.5 (eastbound side) and
  y = 3.5 (westbound side), so |y| > 3.5 m is off road."""
  types, x, y, yaw, vx, valid, length, width = (np.array(v) for v in zip(*objects))
  traj = builders.trajectory_from_arrays(
      x, y, np.broadcast_to(yaw[:, None], x.shape), valid, length=length, width=width,
      vel_x=np.broadcast_to(vx[:, None], x.shape), vel_y=np.zeros_like(x), num_objects=8)
  meta = builders.metadata_from_arrays(types, num_objects=8, sdc_index=0,
                                       is_modeled=np.asarray(modeled))
  road = [builders.Polyline(np.array([[0.0, -3.5], [200, -3.5]]), 15, 1),
          builders.Polyline(np.array([[200.0, 3.5], [0, 3.5]]), 15, 2),
          builders.Polyline(np.array([[0.0, -1.75], [200, -1.75]]), 2, 3),
          builders.Polyline(np.array([[200.0, 1.75], [0, 1.75]]), 2, 4)]
  return builders.make_state(traj, meta, builders.roadgraph_from_polylines(road, 2048))


def _valid(start=0, end=T, gap=None):
  ok = (STEPS >= start) & (STEPS < end)
  if gap is not None:
    ok &= (STEPS < gap[0]) | (STEPS >= gap[1])
  return ok


def _held_log(state):
  """``{x, y, z, yaw}`` ``(N, T)`` of the log, each object holding its last valid pose
  where the log is invalid (numpy copies to edit into rollouts)."""
  log = jax.tree.map(np.asarray, state.log_trajectory)
  out = {}
  for name in ('x', 'y', 'z', 'yaw'):
    v = getattr(log, name).copy()
    for i in range(v.shape[0]):
      ok = log.valid[i]
      if ok.any():
        last = np.maximum.accumulate(np.where(ok, STEPS, -1))
        v[i] = v[i][np.where(last >= 0, last, ok.argmax())]
    out[name] = v
  return out


def _rollouts(poses, valid=None):
  """``Trajectory (R, N, 80)`` from ``(R, N, T)`` poses (future steps kept)."""
  fields = {n: np.asarray(v, np.float32)[..., 11:] for n, v in poses.items()}
  shape = fields['x'].shape
  zeros = np.zeros(shape, np.float32)
  valid = np.ones(shape, bool) if valid is None else np.asarray(valid)[..., 11:]
  return Trajectory(vel_x=zeros, vel_y=zeros, length=zeros, width=zeros, height=zeros,
                    valid=valid, timestamp_micros=zeros.astype(np.int32), **fields)


def _copies(poses):
  return {n: np.repeat(v[None], R, 0) for n, v in poses.items()}


# ----------------------------------------------------------------- log replay's sim set
def test_log_replay_simulates_every_current_object_for_the_whole_future():
  t = STEPS * 0.1
  state = _scene([
      (V, 10 + 10 * t, np.full(T, -1.75), 0.0, 10.0, _valid(), 4.5, 2.0),
      # The log ends after step 30 (at x = 70): extrapolated at 10 m/s from there.
      (V, 40 + 10 * t, np.full(T, -1.75), 0.0, 10.0, _valid(end=31), 4.5, 2.0),
      # Standing still, a logged gap at 40..49, then logged 5 m further: held through
      # the gap (zero velocity), back on the log from step 50.
      (V, np.where(STEPS < 45, 120.0, 125.0), np.full(T, 1.75), np.pi, 0.0,
       _valid(gap=(40, 50)), 4.5, 2.0),
      # Absent at the current step: not a sim agent, never appears.
      (V, np.full(T, 150.0), np.full(T, 1.75), np.pi, 0.0, _valid(start=20), 4.5, 2.0),
      # The log ends after step 31, between two decision boundaries (10, 12, ...):
      # extrapolated from the second sub-step of that decision on.
      (V, 100 - 5 * t, np.full(T, 1.75), np.pi, -5.0, _valid(end=32), 4.5, 2.0),
  ], modeled=[False, True, True, False, False])
  final = sim_agents.closed_loop_rollout(
      policies.LogReplayPolicy(), None, state, jax.random.key(0), env=BARE,
      vocab=primitive_vocabulary(16), num_steps=40).final_state
  sim, log = jax.tree.map(np.asarray, final.sim_trajectory), jax.tree.map(
      np.asarray, state.log_trajectory)
  sim_set = np.array([0, 1, 2, 4])
  assert sim.valid[sim_set].all()  # from step 0 to 90
  assert not sim.valid[3].any()
  logged = log.valid[sim_set]
  for field in ('x', 'y', 'yaw', 'vel_x', 'vel_y'):
    np.testing.assert_array_equal(getattr(sim, field)[sim_set][logged],
                                  getattr(log, field)[sim_set][logged], err_msg=field)
  np.testing.assert_allclose(sim.x[1, 31:], 70 + 1.0 * np.arange(1, 61), rtol=1e-5)
  np.testing.assert_allclose(sim.x[4, 32:], 100 - 5 * 3.1 - 0.5 * np.arange(1, 60),
                             rtol=1e-5)
  np.testing.assert_array_equal(sim.yaw[4, 32:], np.float32(np.pi))
  np.testing.assert_array_equal(sim.y[1, 31:], -1.75)
  np.testing.assert_array_equal(sim.vel_x[1, 31:], 10.0)
  np.testing.assert_array_equal(sim.x[2, 40:50], 120.0)
  np.testing.assert_array_equal(sim.x[2, 50:], 125.0)


# ----------------------------------------------------------------- realism's sim set
def _sim_set_scene():
  t = STEPS * 0.1
  return _scene([
      (V, 10 + 10 * t, np.full(T, -1.75), 0.0, 10.0, _valid(), 4.5, 2.0),  # SDC
      (V, 140 - 9 * t, np.full(T, 1.75), np.pi, -9.0, _valid(), 4.5, 2.0),  # evaluated
      # Absent at the current step, logged from step 20 right on the SDC's path.
      (V, 10 + 10 * t, np.full(T, -1.75), 0.0, 10.0, _valid(start=20), 4.5, 2.0),
      # A sim agent whose log ends after step 30, parked beside the road.
      (V, np.full(T, 60.0), np.full(T, -6.0), 0.0, 0.0, _valid(end=31), 4.5, 2.0),
  ], modeled=[False, True, False, False])


def test_objects_absent_at_the_current_step_are_no_partners():
  state = _sim_set_scene()
  poses = _copies(_held_log(state))
  # Object 2 drives inside the SDC in every rollout and is marked valid: still no
  # collision, it is not simulated.
  # Rollout 0: object 3 (simulated after its log ended) sits on the SDC at 50..55.
  poses['x'][0, 3, 50:56], poses['y'][0, 3, 50:56] = poses['x'][0, 0, 50:56], -1.75
  # Rollout 1: object 3 is dropped from step 60 (the old log replay's (-1, -1) fill).
  valid = np.ones((R, 8, T), bool)
  valid[1, 3, 60:] = False
  poses['x'][1, 3, 60:], poses['y'][1, 3, 60:] = -1.0, -1.0
  f = compute_features(state, _rollouts(poses, valid), OPTIONS)
  res = jax.tree.map(np.asarray, score_features(f, '2025'))
  dist = np.asarray(f.distance_to_nearest_object)  # (S, E, 80)
  # Object 2 is never the SDC's partner, in the log or any rollout; object 3 only in
  # rollout 0, where it overlaps the SDC.
  assert (dist[0, 0] > 0).all() and (dist[2, 0] > 0).all()
  np.testing.assert_array_less(dist[1, 0, 39:45], 0.0)  # steps 50..55 of rollout 0
  assert (np.delete(dist[1, 0], np.s_[39:45]) > 0).all()
  assert res.collision_rate == pytest.approx(1 / (2 * R))  # SDC in rollout 0 only
  assert res.collision_rate_vehicle == pytest.approx(1 / (2 * R))
  assert int(res.invalid_sim_steps) == 91 - 60
  assert int(res.num_evaluated) == 2


def test_log_replay_rollouts_match_the_sim_set_exactly():
  state = _sim_set_scene()
  rollouts = sim_agents.realism_rollouts(
      policies.LogReplayPolicy(), None, state, jax.random.key(0), R, env=BARE,
      vocab=primitive_vocabulary(16), num_steps=40, jit_options=FAST)
  sim_agent = np.asarray(state.log_trajectory.valid[:, 10] & state.object_metadata.is_valid)
  np.testing.assert_array_equal(np.asarray(rollouts.valid),
                                np.broadcast_to(sim_agent[None, :, None], (R, 8, 80)))
  res = score_features(compute_features(state, rollouts, OPTIONS), '2025')
  assert int(res.invalid_sim_steps) == 0 and float(res.collision_rate) == 0.0


# ----------------------------------------------------------------- per-type rates
def _score(state, rollouts):
  return score_features(compute_features(state, rollouts, OPTIONS), '2025')


def _typed_scene():
  t = STEPS * 0.1
  return _scene([
      (V, 10 + 8 * t, np.full(T, -1.75), 0.0, 8.0, _valid(), 4.5, 2.0),  # SDC
      # A pedestrian on the sidewalk for its whole log: off road in the log.
      (P, 30 + 1.2 * t, np.full(T, -5.0), 0.0, 1.2, _valid(), 0.8, 0.8),
      (C, 60 + 4 * t, np.full(T, -1.75), 0.0, 4.0, _valid(), 2.0, 0.8),
      # A pedestrian on the sidewalk logged up to the current step only: off road in
      # the log at the current step, no logged future step to score.
      (P, np.full(T, 90.0), np.full(T, 5.0), np.pi, 0.0, _valid(end=11), 0.8, 0.8),
      (V, np.full(T, 40.0), np.full(T, 1.75), np.pi, 0.0, _valid(), 4.5, 2.0),  # parked
  ], modeled=[False, True, True, True, False])


def test_rates_per_agent_type_and_without_logged_offroad_agents():
  state = _typed_scene()
  poses = _copies(_held_log(state))
  # Rollout 0: the cyclist rides into the parked car at steps 30..35.
  poses['x'][0, 2, 30:36], poses['y'][0, 2, 30:36] = 40.0, 1.75
  # Rollout 1: the SDC leaves the road at steps 40..50.
  poses['y'][1, 0, 40:51] = -8.0
  res = jax.tree.map(np.asarray, _score(state, _rollouts(poses)))
  assert [int(res.num_evaluated_vehicle), int(res.num_evaluated_pedestrian),
          int(res.num_evaluated_cyclist)] == [1, 2, 1]
  # 4 evaluated agents x 2 rollouts: one collision (cyclist, rollout 0).
  assert res.collision_rate == pytest.approx(1 / 8)
  assert res.collision_rate_cyclist == pytest.approx(1 / 2)
  assert res.collision_rate_vehicle == 0.0 and res.collision_rate_pedestrian == 0.0
  # Off road: the SDC in rollout 1, the sidewalk pedestrian in both; the second
  # pedestrian has no scored step.
  assert res.offroad_rate == pytest.approx(3 / 8)
  assert res.offroad_rate_vehicle == pytest.approx(1 / 2)
  assert res.offroad_rate_pedestrian == pytest.approx(2 / 4)
  assert res.offroad_rate_cyclist == 0.0
  # Both pedestrians are off road in the log (through the future / at the current
  # step): left out, the SDC's and the cyclist's 4 pairs remain.
  assert int(res.num_log_offroad) == 2
  assert res.offroad_rate_excl_log_offroad == pytest.approx(1 / 4)


def test_aggregate_skips_scenarios_without_the_type():
  state = _typed_scene()
  one = _score(state, _rollouts(_copies(_held_log(state))))
  two = jax.tree.map(lambda v: jnp.stack([v, v]), one)
  two = two.replace(collision_rate_pedestrian=jnp.array([0.5, jnp.nan]),
                    offroad_rate_excl_log_offroad=jnp.array([jnp.nan, 0.25]),
                    num_log_offroad=jnp.array([2, 1], jnp.int32))
  agg = aggregate(two)
  assert float(agg.collision_rate_pedestrian) == pytest.approx(0.5)
  assert float(agg.offroad_rate_excl_log_offroad) == pytest.approx(0.25)
  assert int(agg.num_log_offroad) == 3 and int(agg.num_evaluated_pedestrian) == 4
  assert float(agg.collision_rate) == pytest.approx(float(one.collision_rate))
