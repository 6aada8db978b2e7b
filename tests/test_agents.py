"""Sim agents: log replay, constant velocity and IDM along the logged path."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.sim import agents, builders
from spacer_jax.sim.agents import idm
from spacer_jax.sim.dynamics import apply_trajectory_update

BATCHES = [(), (2,), (2, 1)]


def _batch(tree, shape):
  return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, shape + x.shape), tree)


def _scenario(x, y, yaw, valid, vel_x=None, vel_y=None, timestep=0, num_objects=None,
              length=4.5, width=2.0, types=None):
  """A state from ``(n, T)`` arrays at ``timestep``; the sim equals the log up to it.
  ``types``: ``(n,)`` object types (default all vehicles)."""
  x = np.asarray(x, np.float64)
  n = x.shape[0]
  traj = builders.trajectory_from_arrays(
      x, y, yaw, valid, np.full(n, length), np.full(n, width), vel_x=vel_x, vel_y=vel_y,
      num_objects=num_objects)
  types = np.ones(n, np.int32) if types is None else np.asarray(types, np.int32)
  meta = builders.metadata_from_arrays(types, num_objects=traj.num_objects)
  road = builders.roadgraph_from_polylines(
      [builders.Polyline(np.array([[0.0, -5.0], [10.0, -5.0]]), 15, 1)], num_points=64)
  state = builders.make_state(traj, meta, road)
  return state.replace(timestep=jnp.asarray(timestep, jnp.int32))


@functools.partial(jax.jit, static_argnums=(0, 2))
def _rollout(agent, state, steps, controlled):
  """Closed-loop steps with ``agent`` on ``controlled`` ``(..., N)``; the rest replay
  the log. Returns the final state. Compiled once per agent, shapes and length: the
  IDM scenarios below share one shape (4 objects, 301 steps) to share the compile."""
  def body(s, _):
    upd = agent.select_update(s, None)
    sim = apply_trajectory_update(s, upd, controlled)
    return s.replace(sim_trajectory=sim, timestep=s.timestep + 1), None
  final, _ = jax.lax.scan(body, state, None, length=steps)
  return final


IDM_T = 301  # 30 s of log: every IDM scenario below shares this shape.
# A fixed v0 and no bend limits: the old IDM, to contrast with (one compile for all).
FIXED_IDM = agents.IDMAgent(desired_speed=15.0, lateral_accel_limit=None)


@jax.jit
def _arc_along_log(state, xy):
  """Arc length of ``xy`` ``(N, T', 2)`` along each object's logged path, and the path
  end's arc length ``(N,)`` (the last logged point)."""
  points, arc, _ = idm.logged_paths(state.log_trajectory)
  s = jax.vmap(lambda p: idm.project_onto_path(points, arc, p), in_axes=1, out_axes=1)(xy)
  return s, arc[..., -2]


def _sim_xy(sim):
  return jnp.stack([sim.x, sim.y], -1)


def _stationary_and_follower(num_t, leader_x=150.0, follower_speed=15.0):
  """Object 0 logged at ``follower_speed`` along y = 0 (its log drives through the
  leader); object 1 parked at ``leader_x``. Objects 2, 3 are padding."""
  t = np.arange(num_t) * 0.1
  x = np.stack([follower_speed * t, np.full(num_t, leader_x)])
  vel_x = np.stack([np.full(num_t, follower_speed), np.zeros(num_t)])
  zeros = np.zeros((2, num_t))
  return _scenario(x, zeros, zeros, np.ones((2, num_t), bool), vel_x=vel_x, vel_y=zeros,
                   num_objects=4)


# -- log replay and constant velocity ----------------------------------------------

def test_log_replay_reproduces_the_log_exactly(two_lane_state):
  state = two_lane_state.replace(timestep=jnp.int32(10))
  final = _rollout(agents.LogReplayAgent(), state, 80, state.object_metadata.is_valid)
  chex.assert_trees_all_equal(final.sim_trajectory, state.log_trajectory)
  assert int(final.timestep) == 90


def test_constant_velocity_keeps_speed_and_heading():
  # A car turning in the log at 12 m/s, heading 0.3 at t = 5: the agent ignores the log.
  num_t = 40
  t = np.arange(num_t) * 0.1
  yaw = 0.3 + 0.05 * (t - 0.5)
  x, y = np.cumsum(12 * np.cos(yaw)) * 0.1, np.cumsum(12 * np.sin(yaw)) * 0.1
  state = _scenario(x[None], y[None], yaw[None], np.ones((1, num_t), bool),
                    vel_x=12 * np.cos(yaw)[None], vel_y=12 * np.sin(yaw)[None], timestep=5)
  final = _rollout(agents.ConstantVelocityAgent(), state, 30, jnp.ones(1, bool))
  sim = final.sim_trajectory
  steps = np.arange(5, 36)
  np.testing.assert_allclose(sim.speed[0, steps], 12.0, rtol=1e-5)
  np.testing.assert_allclose(sim.yaw[0, steps], yaw[5], atol=1e-6)
  travelled = np.hypot(sim.x[0, 35] - sim.x[0, 5], sim.y[0, 35] - sim.y[0, 5])
  np.testing.assert_allclose(travelled, 12.0 * 3.0, rtol=1e-5)


@pytest.mark.parametrize('jit', [False, True])
@pytest.mark.parametrize('batch', BATCHES)
@pytest.mark.parametrize('name', ['log_replay', 'constant_velocity', 'idm'])
def test_agents_at_batch_shapes(two_lane_state, name, batch, jit):
  agent = agents.get_sim_agent(name)
  state = _batch(two_lane_state.replace(timestep=jnp.int32(10)), batch)
  fn = jax.jit(agent.select_update) if jit else agent.select_update
  upd = fn(state, jax.random.PRNGKey(0))
  for leaf in jax.tree_util.tree_leaves(upd):
    chex.assert_shape(leaf, batch + (8, 1))
  # Cars 0-2 are valid and drive +x; the padding is invalid.
  expected = np.broadcast_to(np.array([1, 1, 1, 0, 0, 0, 0, 0], bool), batch + (8,))
  np.testing.assert_array_equal(upd.valid[..., 0], expected)
  cur = state.current_sim_trajectory
  assert bool(jnp.all((upd.x - cur.x)[..., :2, :] > 0))
  chex.assert_shape(agent.controlled_mask(state), batch + (8,))


def test_idm_vmaps_like_batching(two_lane_state):
  agent = agents.IDMAgent()
  state = _batch(two_lane_state.replace(timestep=jnp.int32(10)), (2,))
  chex.assert_trees_all_close(jax.vmap(agent.select_update)(state),
                              agent.select_update(state), atol=1e-5)


# -- IDM -------------------------------------------------------------------------------

def test_idm_desired_speeds_from_history_log_floors_and_cap():
  """Known answers of v0 at timestep 10 (11 known steps): the highest valid speed seen
  so far, floored by type (3 / 1 / 2 m/s for vehicles / pedestrians / cyclists) and
  capped at 35 m/s; ``'log'`` also sees the logged future."""
  num_t = 20
  speed = np.full((6, num_t), 8.0)
  speed[0, 3], speed[0, 11:] = 12.0, 25.0  # history peak 12, future 25
  speed[1, :11], speed[1, 11:] = 0.0, 10.0  # a vehicle queued through its history
  speed[2] = 0.0  # a standing pedestrian
  speed[3] = 5.0  # a cyclist
  speed[4, 6] = 50.0  # a tracking spike
  speed[5, 4] = 30.0  # an invalid step does not count
  valid = np.ones((6, num_t), bool)
  valid[5, 4] = False
  x = np.cumsum(speed, axis=1) * 0.1
  zeros = np.zeros_like(x)
  state = _scenario(x, zeros, zeros, valid, vel_x=speed, vel_y=zeros, timestep=10,
                    num_objects=8, types=[1, 1, 2, 3, 1, 1])
  history = agents.IDMAgent().desired_speeds(state)
  np.testing.assert_allclose(history[:6], [12.0, 3.0, 1.0, 5.0, 35.0, 8.0], rtol=1e-6)
  oracle = agents.IDMAgent(desired_speed_source='log').desired_speeds(state)
  np.testing.assert_allclose(oracle[:6], [25.0, 10.0, 1.0, 5.0, 35.0, 8.0], rtol=1e-6)
  # 'history' reads what was simulated, not the log: a sim that drove 20 m/s at step 7.
  sim = state.sim_trajectory
  state = state.replace(sim_trajectory=sim.replace(vel_x=sim.vel_x.at[0, 7].set(20.0)))
  np.testing.assert_allclose(agents.IDMAgent().desired_speeds(state)[0], 20.0, rtol=1e-6)
  np.testing.assert_allclose(agents.IDMAgent(desired_speed=7.0).desired_speeds(state), 7.0)
  with pytest.raises(ValueError, match='desired_speed_source'):
    agents.IDMAgent(desired_speed_source='future')
  with pytest.raises(ValueError, match='min_desired_speed'):
    agents.IDMAgent(min_desired_speed=(3.0, 1.0))


def test_idm_desired_speed_follows_the_history_not_the_logged_future():
  """Logged at 12 m/s at step 0 (the only known step), 6 m/s for 2 s, then 25 m/s:
  the history IDM settles at 12 m/s and never exceeds it; the oracle (``'log'``) one
  goes for the log's 25 m/s."""
  num_t = IDM_T
  speed = np.full(num_t, 25.0)
  speed[0], speed[1:21] = 12.0, 6.0
  x = (np.cumsum(speed) * 0.1)[None]
  zeros = np.zeros((1, num_t))
  state = _scenario(x, zeros, zeros, np.ones((1, num_t), bool), vel_x=speed[None],
                    vel_y=zeros, num_objects=4)
  controlled = jnp.array([True, False, False, False])
  sim = _rollout(agents.IDMAgent(), state, num_t - 1, controlled).sim_trajectory
  v = np.asarray(sim.speed[0])
  assert np.all(np.diff(v) <= 2.0 * 0.1 + 1e-5)  # at most max_accel
  assert v.max() <= 12.0 + 1e-4, v.max()
  np.testing.assert_allclose(v[100:200], 12.0, atol=0.05)  # cruising at v0
  np.testing.assert_allclose(sim.y[0], 0.0, atol=1e-4)  # on its path
  oracle = agents.IDMAgent(desired_speed_source='log')
  v_oracle = np.asarray(_rollout(oracle, state, num_t - 1, controlled).sim_trajectory.speed[0])
  assert 0.93 * 25.0 < v_oracle.max() <= 25.0 + 1e-4, v_oracle.max()


def _bend_pose(s, radius, straight):
  """Pose at arc length ``s`` of a path along +x up to ``straight`` metres, a left
  quarter circle of ``radius`` centred at ``(0, radius)``, then along +y."""
  theta = np.clip((s - straight) / radius, 0.0, np.pi / 2)
  after = np.maximum(s - straight - np.pi / 2 * radius, 0.0)
  x = np.where(s < straight, s - straight, radius * np.sin(theta))
  y = radius * (1 - np.cos(theta)) + after
  return x, y, theta


def test_idm_slows_before_a_sharp_bend():
  """Logged at 15 m/s through a 10 m-radius bend 100 m ahead: v_bend = sqrt(2.5 * 10) =
  5 m/s. The agent cruises until the braking envelope at b_c = 2 m/s^2 (50 m before
  the bend), brakes at no more than b, enters the bend at about 5 m/s and keeps its
  lateral acceleration near 2.5 m/s^2; the fixed-v0 IDM takes the bend at 15 m/s."""
  num_t, radius, straight = IDM_T, 10.0, 100.0
  s_log = 15.0 * np.arange(num_t) * 0.1
  x, y, yaw = _bend_pose(s_log, radius, straight)
  vel = 15.0 * np.stack([np.cos(yaw), np.sin(yaw)])
  state = _scenario(x[None], y[None], yaw[None], np.ones((1, num_t), bool),
                    vel_x=vel[:1], vel_y=vel[1:], num_objects=4)
  controlled = jnp.array([True, False, False, False])
  sim = _rollout(agents.IDMAgent(), state, num_t - 1, controlled).sim_trajectory
  s, _ = _arc_along_log(state, _sim_xy(sim))
  s, v = np.asarray(s[0]), np.asarray(sim.speed[0])
  in_bend = (s >= straight) & (s <= straight + np.pi / 2 * radius)
  assert in_bend.sum() > 20  # it did drive through the bend
  assert v[s < straight - 60.0].min() > 14.9  # no braking from far away
  # Braking envelope 20 m before the bend: sqrt(5^2 + 2 * 2 * 20) = 10.2 m/s.
  assert v[np.argmax(s >= straight - 20.0)] < 11.0  # slowing before the bend
  assert v[in_bend].max() < 5.0 * 1.05, v[in_bend].max()
  assert (v[in_bend] ** 2 / radius).max() < 2.5 * 1.1
  assert np.diff(v).min() >= -4.0 * 0.1 - 1e-4  # braking at most b = 4 m/s^2
  fixed = _rollout(FIXED_IDM, state, num_t - 1, controlled).sim_trajectory
  s_fixed, _ = _arc_along_log(state, _sim_xy(fixed))
  entry = np.argmax(np.asarray(s_fixed[0]) >= straight)
  assert float(fixed.speed[0, entry]) > 14.5


def test_idm_stops_at_the_end_of_its_path():
  """Object 0's log ends after 6 s at 10 m/s (it left the scene); object 1's log brakes
  to a stop at x = 55 m. Both IDMs (v0 = 10 m/s) stop smoothly at their path's end,
  never more than 1 m past it, and stay valid there."""
  num_t = IDM_T
  t = np.arange(num_t) * 0.1
  x0 = 10.0 * t
  tb = np.clip(t - 3.0, 0.0, 5.0)
  x1 = np.minimum(10.0 * t, 30.0) + 10.0 * tb - tb**2
  v1 = np.where(t < 3.0, 10.0, 10.0 - 2.0 * tb)
  valid = np.ones((2, num_t), bool)
  valid[0, 61:] = False
  vel_x = np.stack([np.full(num_t, 10.0), v1])
  zeros = np.zeros((2, num_t))
  state = _scenario(np.stack([x0, x1]), np.stack([t * 0, t * 0 + 20.0]), zeros, valid,
                    vel_x=vel_x, vel_y=zeros, num_objects=4)
  controlled = jnp.array([True, True, False, False])
  sim = _rollout(agents.IDMAgent(), state, num_t - 1, controlled).sim_trajectory
  s, s_end = _arc_along_log(state, _sim_xy(sim))
  np.testing.assert_allclose(s_end[:2], [60.0, 55.0], atol=1e-4)
  for i in range(2):
    past = np.asarray(s[i] - s_end[i])
    v = np.asarray(sim.speed[i])
    assert past.max() <= 1.0, (i, past.max())  # never more than 1 m past the end
    assert past[-1] > -1.0, (i, past[-1])  # and it does drive up to it
    assert v[-100:].max() < 0.01, (i, v[-100:].max())  # stopped for good
    assert np.diff(v).min() >= -6.0 * 0.1, (i, np.diff(v).min())  # no emergency stop
  assert bool(jnp.all(sim.valid[:2]))


def test_idm_stops_behind_stopped_leader():
  """The follower (15 m/s, its v0) sees the leader at the 50 m look-ahead, brakes and
  stops about IDM's s0 = 2 m behind it; speed never negative."""
  num_t = IDM_T
  state = _stationary_and_follower(num_t)
  controlled = jnp.array([True, False, False, False])  # the leader replays its log
  final = _rollout(agents.IDMAgent(), state, num_t - 1, controlled)
  sim = final.sim_trajectory
  speed = np.asarray(sim.speed[0])
  gap = np.asarray(sim.x[1] - sim.x[0]) - 4.5  # centre distance minus two half lengths
  assert np.all(speed >= 0.0)
  assert speed[-1] < 0.05, speed[-1]
  assert gap.min() >= 1.5, gap.min()
  assert gap[-1] < 3.0, gap[-1]  # it does close up to about the minimum gap
  assert bool(jnp.all(sim.valid[:2]))


def test_idm_follows_slower_leader_without_collision():
  # Leader at 8 m/s starting 30 m ahead; follower at 15 m/s; same lane.
  num_t = IDM_T
  t = np.arange(num_t) * 0.1
  x = np.stack([15.0 * t, 30.0 + 8.0 * t])
  zeros = np.zeros((2, num_t))
  vel_x = np.stack([np.full(num_t, 15.0), np.full(num_t, 8.0)])
  state = _scenario(x, zeros, zeros, np.ones((2, num_t), bool), vel_x=vel_x, vel_y=zeros,
                    num_objects=4)
  final = _rollout(agents.IDMAgent(), state, num_t - 1, jnp.array([True, False, False, False]))
  sim = final.sim_trajectory
  gap = np.asarray(sim.x[1] - sim.x[0]) - 4.5
  assert gap.min() > 2.0, gap.min()
  # It settles near the leader's speed.
  np.testing.assert_allclose(sim.speed[0, -1], 8.0, atol=0.5)


def test_idm_follows_curved_logged_path_and_ignores_side_traffic():
  # A circle of radius 30 m driven at 6 m/s (180 m logged); a car parked 4 m outside
  # the curve. The first 40 steps keep the accelerating agent well inside the log; its
  # fixed v0 (15 m/s, no bend limit) keeps it accelerating.
  num_t = IDM_T
  t = np.arange(num_t) * 0.1
  ang = 6.0 * t / 30.0
  x = np.stack([30 * np.sin(ang), np.full(num_t, 34 * np.sin(0.8))])
  y = np.stack([30 * (1 - np.cos(ang)), np.full(num_t, 30 - 34 * np.cos(0.8))])
  yaw = np.stack([ang, np.full(num_t, 0.8)])
  state = _scenario(x, y, yaw, np.ones((2, num_t), bool), num_objects=4)
  final = _rollout(FIXED_IDM, state, num_t - 1, jnp.array([True, False, False, False]))
  sim = final.sim_trajectory
  steps = np.arange(0, 41)
  radius = np.hypot(sim.x[0, steps], sim.y[0, steps] - 30.0)
  np.testing.assert_allclose(radius, 30.0, atol=0.05)  # on the logged arc (chord error)
  speed = np.asarray(sim.speed[0, steps])
  assert np.all(np.diff(speed) > 0)  # the parked car beside the path is not a leader
  heading = np.arctan2(sim.x[0, steps], 30.0 - sim.y[0, steps])  # tangent of the circle
  np.testing.assert_allclose(sim.yaw[0, steps], heading, atol=0.02)


def test_idm_leader_detection_geometry():
  state = _stationary_and_follower(91, leader_x=20.0)
  state = state.replace(timestep=jnp.int32(0))
  agent = agents.IDMAgent()

  @jax.jit
  def detect(state):
    points, arc, has_path = idm.logged_paths(state.log_trajectory)
    cur = state.current_sim_trajectory
    s = idm.project_onto_path(points, arc, jnp.stack([cur.x[:, 0], cur.y[:, 0]], -1))
    return arc, has_path, agent.find_leaders(state, points, arc, s, cur.yaw[:, 0])

  arc, has_path, (has, gap, lead_speed) = detect(state)
  np.testing.assert_array_equal(has_path, [True, True, False, False])
  assert bool(has[0]) and not bool(has[1])
  np.testing.assert_allclose(gap[0], 20.0 - 4.5, atol=1e-4)
  np.testing.assert_allclose(lead_speed[0], 0.0)
  # The parked leader's path is a point plus a straight extension along its yaw.
  np.testing.assert_allclose(arc[1, -1], 1000.0, rtol=1e-5)


def test_idm_acceleration_formula():
  agent = agents.IDMAgent()
  # Free road at half the desired speed: 2 * (1 - 0.5^4).
  np.testing.assert_allclose(agent.acceleration(15.0, 30.0, 0.0, 0.0, False),
                             2 * (1 - 0.0625), rtol=1e-6)
  # Standing, leader standing 2 m ahead: s* = s0 = 2 -> 2 * (1 - 0 - 1) = 0.
  np.testing.assert_allclose(agent.acceleration(0.0, 30.0, 2.0, 0.0, True), 0.0, atol=1e-6)
  # 10 m/s closing at 10 m/s on a 40 m gap: s* = 2 + 20 + 100 / (2 sqrt(8)).
  s_star = 2 + 20 + 100 / (2 * np.sqrt(8))
  expected = 2 * (1 - (10 / 30) ** 4 - (s_star / 40) ** 2)
  np.testing.assert_allclose(agent.acceleration(10.0, 30.0, 40.0, 0.0, True), expected,
                             rtol=1e-5)
  # Without time headway (the path end): s* = 2 + 100 / (2 sqrt(8)).
  s_star = 2 + 100 / (2 * np.sqrt(8))
  np.testing.assert_allclose(
      agent.acceleration(10.0, 30.0, 40.0, 0.0, True, time_headway=0.0),
      2 * (1 - (10 / 30) ** 4 - (s_star / 40) ** 2), rtol=1e-5)
  with pytest.raises(ValueError, match='desired_speed'):
    agents.IDMAgent(desired_speed=0.0)


def test_path_curvature_and_bend_limits_known_answers():
  # A circle of radius 30 m logged at 6 m/s, and a straight line: kappa 1/30 and 0.
  t = np.arange(91) * 0.1
  ang = 6.0 * t / 30.0
  x = np.stack([30 * np.sin(ang), 10.0 * t])
  y = np.stack([30 * (1 - np.cos(ang)), np.zeros_like(t)])
  state = _scenario(x, y, np.stack([ang, 0 * t]), np.ones((2, 91), bool))
  points, arc, _ = idm.logged_paths(state.log_trajectory)
  kappa = idm.path_curvature(points, arc, 2.0)
  chex.assert_shape(kappa, (2, 91))
  np.testing.assert_allclose(kappa[0, 5:-5], 1 / 30, rtol=0.03)  # 0.6 m chords
  np.testing.assert_allclose(kappa[1, :-1], 0.0, atol=1e-6)
  # On the circle the cap is sqrt(2.5 * 30); nothing limits on the straight. At 15 m/s
  # the agent is above the cap and brakes at the most b = 4 m/s^2.
  agent = agents.IDMAgent()
  cap, brake = agent.bend_limits(points, arc, jnp.array([10.0, 10.0]), jnp.array([15.0, 15.0]))
  np.testing.assert_allclose(cap[0], np.sqrt(75.0), rtol=0.03)
  np.testing.assert_allclose(brake[0], -4.0, rtol=1e-6)
  assert np.isinf(cap[1]) or cap[1] > 1e3
  assert np.isinf(brake[1])


def test_boxes_overlap_needs_positive_margin():
  c0 = jnp.zeros(2)
  ov = lambda c1, yaw1: bool(idm.boxes_overlap(c0, 0.0, 2.0, 1.0, jnp.asarray(c1), yaw1,
                                               2.0, 1.0))
  assert ov([3.9, 0.0], 0.0)
  assert not ov([4.0, 0.0], 0.0)  # touching is not overlapping
  assert not ov([0.0, 2.0], 0.0)
  assert ov([2.5, 2.5], np.pi / 4)
  assert not ov([3.5, 3.5], np.pi / 4)


# -- control masks and merging -------------------------------------------------------

def test_controlled_masks_and_merge(two_lane_state):
  state = two_lane_state.replace(timestep=jnp.int32(10))
  meta = state.object_metadata.replace(
      is_controlled=jnp.array([1, 0, 0, 0, 0, 0, 0, 0], bool))
  state = state.replace(object_metadata=meta)
  np.testing.assert_array_equal(agents.controlled_mask(state, 'non_controlled')[:4],
                                [0, 1, 1, 0])
  np.testing.assert_array_equal(agents.controlled_mask(state, 'non_sdc')[:4], [0, 1, 1, 0])
  np.testing.assert_array_equal(agents.controlled_mask(state, 'all')[:4], [1, 1, 1, 0])
  policy = agents.ConstantVelocityAgent().select_update(state)
  policy = policy.replace(x=policy.x + 100.0)
  idm_agent = agents.IDMAgent()
  merged, mask = agents.merge_agent_updates(state, policy, meta.is_controlled,
                                            [idm_agent], jax.random.PRNGKey(0))
  np.testing.assert_array_equal(mask[:4], [1, 1, 1, 0])
  np.testing.assert_allclose(merged.x[0], policy.x[0])
  np.testing.assert_allclose(merged.x[1:3], idm_agent.select_update(state).x[1:3])
  with pytest.raises(ValueError, match='idm'):
    agents.get_sim_agent('nope')
