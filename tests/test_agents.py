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
              length=4.5, width=2.0):
  """A state from ``(n, T)`` arrays at ``timestep``; the sim equals the log up to it."""
  x = np.asarray(x, np.float64)
  n = x.shape[0]
  traj = builders.trajectory_from_arrays(
      x, y, yaw, valid, np.full(n, length), np.full(n, width), vel_x=vel_x, vel_y=vel_y,
      num_objects=num_objects)
  meta = builders.metadata_from_arrays(np.ones(n, np.int32), num_objects=traj.num_objects)
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


IDM_T = 301  # 30 s: IDM needs ~20 s to approach 30 m/s from 5 m/s.


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

def test_idm_free_road_accelerates_to_desired_speed():
  num_t = IDM_T
  t = np.arange(num_t) * 0.1
  x = 5.0 * t[None]
  zeros = np.zeros((1, num_t))
  state = _scenario(x, zeros, zeros, np.ones((1, num_t), bool),
                    vel_x=np.full((1, num_t), 5.0), vel_y=zeros, num_objects=4)
  final = _rollout(agents.IDMAgent(), state, num_t - 1, jnp.array([True, False, False, False]))
  speed = np.asarray(final.sim_trajectory.speed[0])
  assert np.all(np.diff(speed) >= -1e-5)  # free road: never slows down
  assert np.all(np.diff(speed) <= 2.0 * 0.1 + 1e-5)  # at most max_accel
  assert 0.93 * 30.0 < speed[-1] <= 30.0, speed[-1]
  # It stays on its path (y = 0), past the end of the log (x = 150 m) along the heading.
  assert float(final.sim_trajectory.x[0, -1]) > 400.0
  np.testing.assert_allclose(final.sim_trajectory.y[0], 0.0, atol=1e-4)
  np.testing.assert_allclose(final.sim_trajectory.yaw[0], 0.0, atol=1e-5)


def test_idm_stops_behind_stopped_leader():
  """Measured: the follower (15 m/s, accelerating) sees the leader at the 50 m
  look-ahead at ~20 m/s, brakes (peak 18.5 m/s^2, IDM's unbounded braking) and stops
  1.68 m behind it, just under IDM's s0 = 2 m; speed never negative."""
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
  # the curve. The first 40 steps keep the accelerating agent well inside the log.
  num_t = IDM_T
  t = np.arange(num_t) * 0.1
  ang = 6.0 * t / 30.0
  x = np.stack([30 * np.sin(ang), np.full(num_t, 34 * np.sin(0.8))])
  y = np.stack([30 * (1 - np.cos(ang)), np.full(num_t, 30 - 34 * np.cos(0.8))])
  yaw = np.stack([ang, np.full(num_t, 0.8)])
  state = _scenario(x, y, yaw, np.ones((2, num_t), bool), num_objects=4)
  final = _rollout(agents.IDMAgent(), state, num_t - 1, jnp.array([True, False, False, False]))
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
  np.testing.assert_allclose(agent.acceleration(15.0, 0.0, 0.0, False), 2 * (1 - 0.0625),
                             rtol=1e-6)
  # Standing, leader standing 2 m ahead: s* = s0 = 2 -> 2 * (1 - 0 - 1) = 0.
  np.testing.assert_allclose(agent.acceleration(0.0, 2.0, 0.0, True), 0.0, atol=1e-6)
  # 10 m/s closing at 10 m/s on a 40 m gap: s* = 2 + 20 + 100 / (2 sqrt(8)).
  s_star = 2 + 20 + 100 / (2 * np.sqrt(8))
  expected = 2 * (1 - (10 / 30) ** 4 - (s_star / 40) ** 2)
  np.testing.assert_allclose(agent.acceleration(10.0, 40.0, 0.0, True), expected,
                             rtol=1e-5)
  with pytest.raises(ValueError, match='desired_speed'):
    agents.IDMAgent(desired_speed=0.0)


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
