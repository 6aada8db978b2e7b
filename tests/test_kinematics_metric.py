"""Kinematic infeasibility: bicycle inverse between consecutive simulated steps."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.sim import builders
from spacer_jax.sim.metrics.kinematics import kinematic_infeasibility

BATCHES = [(), (2,), (2, 1)]


def _batch(tree, shape):
  return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, shape + x.shape), tree)


def _state(x, y, vel_x, vel_y, yaw, valid, timestep):
  n = x.shape[0]
  traj = builders.trajectory_from_arrays(x, y, yaw, valid, np.full(n, 4.5), np.full(n, 2.0),
                                         vel_x=vel_x, vel_y=vel_y, num_objects=n + 1)
  meta = builders.metadata_from_arrays(np.ones(n, np.int32), num_objects=n + 1)
  road = builders.roadgraph_from_polylines(
      [builders.Polyline(np.array([[0.0, -5.0], [10.0, -5.0]]), 15, 1)], num_points=64)
  state = builders.make_state(traj, meta, road)
  return state.replace(timestep=jnp.asarray(timestep, jnp.int32))


def _two_step_state():
  """Steps 0 -> 1 of six objects (plus one padding slot), evaluated at t = 1:
  0 smooth (10 m/s, +0.5 m/s, slight turn): feasible;
  1 speed 10 -> 11 m/s in 0.1 s, a = 10 < 10.4: feasible;
  2 speed 10 -> 11.1 m/s, a = 11 > 10.4: infeasible;
  3 heading +0.5 rad over ~1 m at 10 m/s, k ~ 0.5 > 0.3: infeasible;
  4 invalid at step 0: invalid;
  5 slow (0.5 m/s) with a 1.5 rad yaw change: k = 0 below 0.6 m/s, feasible."""
  speeds = np.array([[10.0, 10.5], [10.0, 11.0], [10.0, 11.1], [10.0, 10.0], [10.0, 10.0],
                     [0.5, 0.5]])
  heading = np.array([[0.0, 0.01], [0.0, 0.0], [0.0, 0.0], [0.0, 0.5], [0.0, 0.0],
                      [0.0, 1.5]])
  vel_x, vel_y = speeds * np.cos(heading), speeds * np.sin(heading)
  x = np.cumsum(vel_x * 0.1, axis=1)
  y = np.cumsum(vel_y * 0.1, axis=1)
  valid = np.ones((6, 2), bool)
  valid[4, 0] = False
  return _state(x, y, vel_x, vel_y, heading, valid, 1)


@pytest.mark.parametrize('jit', [False, True])
@pytest.mark.parametrize('batch', BATCHES)
def test_flags_infeasible_steps(batch, jit):
  state = _batch(_two_step_state(), batch)
  fn = jax.jit(kinematic_infeasibility) if jit else kinematic_infeasibility
  result = fn(state)
  chex.assert_shape(result.value, batch + (7,))
  chex.assert_shape(result.valid, batch + (7,))
  expected = np.broadcast_to(np.array([0, 0, 1, 1, 0, 0, 0], np.float32), batch + (7,))
  valid = np.broadcast_to(np.array([1, 1, 1, 1, 0, 1, 0], bool), batch + (7,))
  np.testing.assert_array_equal(result.value, expected)
  np.testing.assert_array_equal(result.valid, valid)


def test_invalid_at_first_step_and_uses_the_simulated_trajectory():
  state = _two_step_state()
  result = kinematic_infeasibility(state.replace(timestep=jnp.int32(0)))
  assert not bool(jnp.any(result.valid))
  # A smooth log but a simulated teleport of 5 m sideways at step 1.
  sim = state.sim_trajectory
  sim = sim.replace(y=sim.y.at[0, 1].add(5.0), vel_y=sim.vel_y.at[0, 1].add(50.0))
  result = kinematic_infeasibility(state.replace(sim_trajectory=sim))
  assert float(result.value[0]) == 1.0


def test_smooth_log_is_feasible_everywhere():
  t = np.arange(91) * 0.1
  speed = 8.0 + 1.0 * np.sin(t)
  yaw = 0.02 * np.cumsum(speed * 0.1)  # curvature 0.02 1/m
  vel_x, vel_y = speed * np.cos(yaw), speed * np.sin(yaw)
  x, y = np.cumsum(vel_x * 0.1), np.cumsum(vel_y * 0.1)
  state = _state(x[None], y[None], vel_x[None], vel_y[None], yaw[None],
                 np.ones((1, 91), bool), 0)
  times = jnp.arange(1, 91, dtype=jnp.int32)
  result = jax.vmap(lambda ts: kinematic_infeasibility(state.replace(timestep=ts)))(times)
  assert bool(jnp.all(result.valid[:, 0]))
  assert float(jnp.max(result.value)) == 0.0
