"""Dynamics models and apply_trajectory_update: hand-computed steps, inverses that
reproduce smooth logs, validity rules, batch shapes and jit."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.sim import builders, dynamics, geometry
from spacer_jax.sim import datatypes as dt
from spacer_jax.sim.datatypes import Action, TrajectoryUpdate
from spacer_jax.sim.dynamics import apply_trajectory_update

BATCHES = [(), (2,), (2, 1)]
NUM_T = 91


def _batch(tree, shape):
  return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, shape + x.shape), tree)


def _integrate(speed_fn, curvature_fn, x0=0.0, y0=0.0, yaw0=0.0, substeps=100):
  """Positions at 10 Hz of a track with speed(t) m/s and curvature(t) 1/m (fine Euler)."""
  h = 0.1 / substeps
  x, y, yaw = x0, y0, yaw0
  xs, ys = [], []
  for i in range(NUM_T * substeps):
    if i % substeps == 0:
      xs.append(x)
      ys.append(y)
    t = i * h
    v = speed_fn(t)
    x += v * np.cos(yaw) * h
    y += v * np.sin(yaw) * h
    yaw += v * curvature_fn(t) * h
  return np.array(xs), np.array(ys)


@functools.cache
def smooth_tracks():
  """Four smooth tracks (N=6 slots, last two padding): a constant-speed circle, a
  straight acceleration, a decelerating S-curve and an accelerating curve."""
  tracks = [
      _integrate(lambda t: 10.0, lambda t: 0.02),
      _integrate(lambda t: 5.0 + 1.5 * t, lambda t: 0.0, y0=10.0),
      _integrate(lambda t: 15.0 - t, lambda t: 0.03 * np.sin(0.7 * t), y0=-10.0),
      _integrate(lambda t: 3.0 + t, lambda t: -0.015, x0=-20.0, yaw0=1.0),
  ]
  x = np.stack([t[0] for t in tracks])
  y = np.stack([t[1] for t in tracks])
  vel_x, vel_y = np.gradient(x, 0.1, axis=1), np.gradient(y, 0.1, axis=1)
  yaw = np.arctan2(vel_y, vel_x)
  valid = np.ones_like(x, bool)
  traj = builders.trajectory_from_arrays(
      x, y, yaw, valid, length=np.full(4, 4.5), width=np.full(4, 2.0),
      z=np.full((4, NUM_T), 0.3), vel_x=vel_x, vel_y=vel_y, num_objects=6)
  return traj


def _state(traj, timestep=10):
  meta = builders.metadata_from_arrays(np.ones(4, np.int32), num_objects=traj.num_objects)
  road = builders.roadgraph_from_polylines(
      [builders.Polyline(np.array([[0.0, -5.0], [100.0, -5.0]]), 15, 1)], num_points=256)
  state = builders.make_state(traj, meta, road)
  return state.replace(timestep=jnp.asarray(timestep, jnp.int32))


def _step(traj, t):
  return dt.slice_time(traj, jnp.asarray(t, jnp.int32), 1)


def _one_object(x=1.0, y=2.0, yaw=0.0, vel_x=10.0, vel_y=0.0, valid=True):
  """A one-object, one-step trajectory ``(1, 1)``."""
  f = lambda v: jnp.full((1, 1), v, jnp.float32)
  return dt.Trajectory(x=f(x), y=f(y), z=f(0.5), vel_x=f(vel_x), vel_y=f(vel_y), yaw=f(yaw),
                       valid=jnp.full((1, 1), valid), timestamp_micros=jnp.zeros((1, 1),
                                                                              jnp.int32),
                       length=f(4.0), width=f(2.0), height=f(1.5))


# -- bicycle ---------------------------------------------------------------------------

def test_bicycle_hand_computed_step():
  model = dynamics.InvertibleBicycleModel()
  act = Action(data=jnp.array([[2.0, 0.1]]), valid=jnp.array([[True]]))
  upd = model.compute_update(act, _one_object())
  # x' = 1 + 10*0.1 + 0.5*2*cos(0)*0.01; ds = 10*0.1 + 0.5*2*0.01 = 1.01; yaw' = 0.101.
  np.testing.assert_allclose(upd.x, [[2.01]], atol=1e-6)
  np.testing.assert_allclose(upd.y, [[2.0]], atol=1e-6)
  np.testing.assert_allclose(upd.yaw, [[0.101]], atol=1e-6)
  np.testing.assert_allclose(upd.vel_x, [[10.2 * np.cos(0.101)]], atol=1e-5)
  np.testing.assert_allclose(upd.vel_y, [[10.2 * np.sin(0.101)]], atol=1e-5)
  assert bool(upd.valid[0, 0])


def test_bicycle_normalized_actions_clip_then_scale():
  model = dynamics.InvertibleBicycleModel(normalize_actions=True)
  low, high = model.action_bounds
  np.testing.assert_array_equal(high, [1, 1])
  act = Action(data=jnp.array([[0.5, 2.0]]), valid=jnp.array([[True]]))
  upd = model.compute_update(act, _one_object())
  # (0.5, 2) -> clip (0.5, 1) -> (3 m/s^2, 0.3 1/m); ds = 1 + 0.015 = 1.015.
  np.testing.assert_allclose(upd.x, [[1 + 1 + 0.015]], atol=1e-6)
  np.testing.assert_allclose(upd.yaw, [[0.3 * 1.015]], atol=1e-6)
  raw = dynamics.InvertibleBicycleModel()
  np.testing.assert_allclose(raw.action_bounds[1], [6.0, 0.3])


def test_bicycle_speed_may_go_negative_and_yaw_wraps():
  model = dynamics.InvertibleBicycleModel()
  act = Action(data=jnp.array([[-6.0, 0.3]]), valid=jnp.array([[True]]))
  upd = model.compute_update(act, _one_object(yaw=np.pi - 0.01, vel_x=-0.2, vel_y=0.0))
  speed = upd.vel_x * jnp.cos(upd.yaw) + upd.vel_y * jnp.sin(upd.yaw)
  np.testing.assert_allclose(speed, [[0.2 - 0.6]], atol=1e-6)  # v' = v + a dt < 0
  # yaw' = pi - 0.01 + 0.3 * (0.02 - 0.03) wraps into [-pi, pi).
  assert -np.pi <= float(upd.yaw[0, 0]) < np.pi


def test_bicycle_inverse_hand_computed_and_low_speed_rules():
  model = dynamics.InvertibleBicycleModel()
  # Object 0: 10 m/s heading 0 -> 12 m/s heading 0.05: a = 20, k = 0.05 / 1.1.
  # Object 1: 0.5 m/s -> 0.5 m/s: a = 0, k = 0 (too slow).
  # Object 2: invalid at t+1: zero action, invalid.
  x = np.zeros((3, 2))
  vel_x = np.array([[10.0, 12 * np.cos(0.05)], [0.5, 0.5], [5.0, 5.0]])
  vel_y = np.array([[0.0, 12 * np.sin(0.05)], [0.0, 0.0], [0.0, 0.0]])
  yaw = np.array([[0.0, 0.3], [0.0, 0.4], [0.0, 0.0]])
  valid = np.array([[True, True], [True, True], [True, False]])
  log = builders.trajectory_from_arrays(x, x, yaw, valid, np.full(3, 4.0), np.full(3, 2.0),
                                        vel_x=vel_x, vel_y=vel_y)
  meta = builders.metadata_from_arrays(np.ones(3, np.int32))
  act = model.inverse(log, meta, jnp.int32(0))
  np.testing.assert_allclose(act.data[0], [20.0, 0.05 / (10 * 0.1 + 0.5 * 20 * 0.01)],
                             rtol=1e-5)
  np.testing.assert_allclose(act.data[1], [0.0, 0.0], atol=1e-6)
  np.testing.assert_array_equal(act.data[2], [0.0, 0.0])
  np.testing.assert_array_equal(act.valid[:, 0], [True, True, False])
  # Past the end there is no transition.
  assert not bool(jnp.any(model.inverse(log, meta, jnp.int32(1)).valid))
  norm = dynamics.InvertibleBicycleModel(normalize_actions=True).inverse(log, meta, 0)
  np.testing.assert_allclose(norm.data[0, 0], 20.0 / 6.0, rtol=1e-5)  # not clipped


def _open_loop_errors(model, traj, times):
  """Per-object max |sim - log| position and heading errors of one step from the log."""
  batch = (len(times),)
  log = _batch(traj, batch)
  t = jnp.asarray(times, jnp.int32)
  meta = _batch(builders.metadata_from_arrays(np.ones(4, np.int32), num_objects=6), batch)
  act = model.inverse(log, meta, t)
  upd = model.compute_update(act, _step(log, t))
  nxt = _step(log, t + 1)
  pos = jnp.hypot(upd.x - nxt.x, upd.y - nxt.y)[:, :4, 0]
  yaw = jnp.abs(geometry.wrap_angle(upd.yaw - nxt.yaw))[:, :4, 0]
  return np.asarray(pos.max(0)), np.asarray(yaw.max(0))


def _closed_loop_error(model, traj, t0=10, steps=80):
  """Position error after driving ``steps`` expert actions in closed loop."""
  state = _state(traj, t0)
  ctrl = state.object_metadata.is_valid

  def body(s, _):
    act = model.inverse(s.log_trajectory, s.object_metadata, s.timestep)
    upd = model.compute_update(act, s.current_sim_trajectory)
    sim = apply_trajectory_update(s, upd, ctrl)
    s = s.replace(sim_trajectory=sim, timestep=s.timestep + 1)
    cur, log = s.current_sim_trajectory, s.current_log_trajectory
    return s, jnp.hypot(cur.x - log.x, cur.y - log.y)[:4, 0]

  _, err = jax.lax.scan(body, state, None, length=steps)
  return np.asarray(err)


def test_bicycle_inverse_reproduces_smooth_log():
  """Measured on these tracks (speeds 3-18 m/s, |curvature| <= 0.03 1/m, |a| <= 1.5):
  one step from the log lands within 2.5 cm of the next logged position (the bicycle's
  position update has no centripetal term, so the error is ~ v^2 |k| dt^2 / 2, at most
  3.4 cm here; straight motion: < 1e-5 m) and within 5e-7 rad of its heading. 80
  closed-loop expert steps let that error accumulate: 0.72 m on the circle.

  The last logged step is left out: its finite-difference velocity is one-sided.
  """
  traj = smooth_tracks()
  model = dynamics.InvertibleBicycleModel()
  pos, yaw = _open_loop_errors(model, traj, np.arange(10, 89))
  assert pos.max() < 0.03, pos
  assert yaw.max() < 1e-5, yaw
  assert pos[1] < 1e-4, pos  # straight, accelerating
  drift = _closed_loop_error(model, traj, steps=79)
  assert drift.max() < 0.8, drift.max(axis=0)
  # Normalised actions give the same trajectory.
  pos_n, _ = _open_loop_errors(dynamics.InvertibleBicycleModel(normalize_actions=True),
                               traj, np.arange(10, 89))
  np.testing.assert_allclose(pos_n, pos, atol=1e-4)


# -- delta and state ---------------------------------------------------------------------

@pytest.mark.parametrize('name', ['delta_global', 'delta_local', 'state'])
def test_delta_and_state_models_reproduce_log(name):
  traj = smooth_tracks()
  model = dynamics.get_dynamics_model(name)
  pos, yaw = _open_loop_errors(model, traj, np.arange(0, 90))
  assert pos.max() < 1e-3 and yaw.max() < 1e-4, (pos, yaw)
  # Closed loop the errors do not accumulate beyond float32 rounding.
  assert _closed_loop_error(model, traj).max() < 1e-3


def test_delta_local_matches_global_after_rotation():
  rng = np.random.default_rng(0)
  n = 16
  traj = builders.trajectory_from_arrays(
      rng.normal(size=(n, 1)) * 50, rng.normal(size=(n, 1)) * 50,
      rng.uniform(-np.pi, np.pi, (n, 1)), np.ones((n, 1), bool), np.full(n, 4.0),
      np.full(n, 2.0), vel_x=rng.normal(size=(n, 1)), vel_y=rng.normal(size=(n, 1)))
  local = rng.uniform(-3, 3, (n, 3)).astype(np.float32)
  yaw = np.asarray(traj.yaw[:, 0])
  world = np.stack([local[:, 0] * np.cos(yaw) - local[:, 1] * np.sin(yaw),
                    local[:, 0] * np.sin(yaw) + local[:, 1] * np.cos(yaw), local[:, 2]], -1)
  valid = jnp.ones((n, 1), bool)
  a = dynamics.DeltaLocal().compute_update(Action(jnp.asarray(local), valid), traj)
  b = dynamics.DeltaGlobal().compute_update(Action(jnp.asarray(world, jnp.float32), valid),
                                            traj)
  chex.assert_trees_all_close(a, b, atol=1e-4)
  np.testing.assert_allclose(b.vel_x[:, 0], world[:, 0] / 0.1, rtol=1e-5)


def test_delta_inverse_clips_and_wraps():
  x = np.array([[0.0, 10.0]])
  yaw = np.array([[3.0, -3.0]])
  log = builders.trajectory_from_arrays(x, x * 0, yaw, np.ones((1, 2), bool),
                                        np.full(1, 4.0), np.full(1, 2.0))
  meta = builders.metadata_from_arrays(np.ones(1, np.int32))
  act = dynamics.DeltaGlobal().inverse(log, meta, jnp.int32(0))
  np.testing.assert_allclose(act.data[0], [6.0, 0.0, 2 * np.pi - 6.0], atol=1e-5)
  low, high = dynamics.DeltaLocal().action_bounds
  np.testing.assert_allclose(high, [6, 6, np.pi])


def test_state_dynamics_sets_pose():
  model = dynamics.StateDynamics()
  act = Action(jnp.array([[5.0, 6.0, 7.0, 1.0, 2.0]]), jnp.array([[True]]))
  upd = model.compute_update(act, _one_object())
  np.testing.assert_allclose([upd.x[0, 0], upd.y[0, 0], upd.vel_x[0, 0], upd.vel_y[0, 0]],
                             [5, 6, 1, 2])
  np.testing.assert_allclose(upd.yaw[0, 0], 7.0 - 2 * np.pi, atol=1e-6)
  assert model.action_dim == 5


def test_factory():
  assert isinstance(dynamics.get_dynamics_model('bicycle', normalize_actions=True),
                    dynamics.InvertibleBicycleModel)
  assert dynamics.get_dynamics_model('delta_local').action_dim == 3
  with pytest.raises(ValueError, match='delta_global'):
    dynamics.get_dynamics_model('nope')
  # Models are hashable configs (static arguments of compiled functions).
  assert hash(dynamics.InvertibleBicycleModel()) == hash(dynamics.InvertibleBicycleModel())


# -- batch shapes and jit ---------------------------------------------------------------

@pytest.mark.parametrize('jit', [False, True])
@pytest.mark.parametrize('batch', BATCHES)
@pytest.mark.parametrize('name', ['bicycle', 'delta_global', 'delta_local', 'state'])
def test_models_at_batch_shapes(name, batch, jit):
  model = dynamics.get_dynamics_model(name)
  state = _batch(_state(smooth_tracks(), 20), batch)

  def step(s):
    act = model.inverse(s.log_trajectory, s.object_metadata, s.timestep)
    upd = model.compute_update(act, s.current_sim_trajectory)
    return act, upd, apply_trajectory_update(s, upd, s.object_metadata.is_valid)

  fn = jax.jit(step) if jit else step
  act, upd, sim = fn(state)
  chex.assert_shape(act.data, batch + (6, model.action_dim))
  chex.assert_shape(act.valid, batch + (6, 1))
  chex.assert_shape(upd.x, batch + (6, 1))
  chex.assert_shape(sim.x, batch + (6, NUM_T))
  np.testing.assert_allclose(sim.x[..., :4, 21], state.log_trajectory.x[..., :4, 21],
                             atol=0.02)
  np.testing.assert_array_equal(act.valid[..., 4:, 0], False)


# -- apply_trajectory_update ---------------------------------------------------------

def _validity_state():
  """5 objects, 4 steps, at t = 1. Object: 0 valid throughout; 1 invalid at t=1, logged
  at t=2 (injection case); 2 leaves the log at t=2; 3 valid throughout; 4 padding."""
  x = np.arange(4.0)[None].repeat(4, 0) + np.arange(4)[:, None] * 10
  valid = np.ones((4, 4), bool)
  valid[1, 1] = False
  valid[2, 2:] = False
  log = builders.trajectory_from_arrays(
      x, x * 0 + 1, np.zeros((4, 4)), valid, np.arange(1.0, 5.0), np.full(4, 2.0),
      z=np.full((4, 4), 0.7), num_objects=5, start_micros=1000)
  state = _state(log, 1)
  return state.replace(sim_trajectory=log.replace(
      x=jnp.where(log.valid, log.x + 0.5, -1.0)))  # sim drifted 0.5 m from the log


def _update(state, valid):
  n = state.num_objects
  f = lambda v: jnp.full((n, 1), v, jnp.float32)
  return TrajectoryUpdate(x=f(100.0), y=f(200.0), yaw=f(0.25), vel_x=f(3.0), vel_y=f(4.0),
                          valid=jnp.asarray(valid)[:, None])


def test_apply_update_controlled_and_log_replay():
  state = _validity_state()
  ctrl = jnp.array([True, True, True, False, False])
  sim = apply_trajectory_update(state, _update(state, [True] * 5), ctrl)
  log = state.log_trajectory
  # Controlled, valid at t: takes the update; z and size from step t.
  np.testing.assert_allclose([sim.x[0, 2], sim.y[0, 2], sim.yaw[0, 2]], [100, 200, 0.25])
  np.testing.assert_allclose([sim.z[0, 2], sim.length[0, 2]], [0.7, 1.0])
  # Controlled but invalid at t: stays invalid (no injection), filled with -1.
  assert not bool(sim.valid[1, 2]) and float(sim.x[1, 2]) == -1.0
  assert int(sim.timestamp_micros[1, 2]) == -1
  # Controlled, valid at t and a valid update: valid even though the log ends.
  assert bool(sim.valid[2, 2]) and float(sim.x[2, 2]) == 100.0
  # Its timestamp advances one step where the log has none.
  assert int(sim.timestamp_micros[2, 2]) == 1000 + 2 * 100_000
  # Not controlled: replays the log at t+1 exactly.
  for name in ('x', 'y', 'yaw', 'vel_x', 'vel_y', 'valid', 'timestamp_micros'):
    np.testing.assert_array_equal(getattr(sim, name)[3, 2], getattr(log, name)[3, 2])
  assert not bool(sim.valid[4, 2])
  # Other steps are untouched.
  for t in (0, 1, 3):
    np.testing.assert_array_equal(sim.x[:, t], state.sim_trajectory.x[:, t])


def test_apply_update_validity_rules():
  state = _validity_state()
  log = state.log_trajectory
  none = jnp.zeros(5, bool)
  # Everything replays the log: object 2 (log invalid at t+1) and 1 (invalid at t) drop.
  sim = apply_trajectory_update(state, _update(state, [True] * 5), none)
  np.testing.assert_array_equal(sim.valid[:, 2], [True, False, False, True, False])
  # With injection, object 1 appears from the log, with the log's size.
  sim = apply_trajectory_update(state, _update(state, [True] * 5), none,
                                allow_object_injection=True)
  np.testing.assert_array_equal(sim.valid[:, 2], [True, True, False, True, False])
  np.testing.assert_allclose(sim.length[1, 2], log.length[1, 2])
  # An invalid action invalidates a controlled object ...
  ctrl = jnp.array([True, False, False, True, False])
  upd = _update(state, [False, True, True, True, True])
  sim = apply_trajectory_update(state, upd, ctrl)
  assert not bool(sim.valid[0, 2]) and float(sim.length[0, 2]) == -1.0
  # ... or with the fallback keeps constant velocity from the simulated state.
  sim = apply_trajectory_update(state, upd, ctrl, use_fallback=True)
  cur = dt.slice_time(state.sim_trajectory, jnp.int32(1), 1)
  assert bool(sim.valid[0, 2])
  np.testing.assert_allclose(sim.x[0, 2], cur.x[0, 0] + 0.1 * cur.vel_x[0, 0], atol=1e-6)
  np.testing.assert_allclose(sim.yaw[0, 2], cur.yaw[0, 0])
  np.testing.assert_allclose(sim.x[3, 2], 100.0)  # valid updates are unaffected


def test_apply_update_past_the_end_writes_nothing():
  state = _validity_state().replace(timestep=jnp.int32(3))
  sim = apply_trajectory_update(state, _update(state, [True] * 5), jnp.ones(5, bool))
  chex.assert_trees_all_equal(sim, state.sim_trajectory)


@pytest.mark.parametrize('batch', BATCHES)
def test_apply_update_per_batch_timestep(batch):
  state = _batch(_state(smooth_tracks(), 10), batch)
  t = jnp.reshape(jnp.arange(10, 10 + int(np.prod(batch, dtype=int))), batch).astype(
      jnp.int32)
  state = state.replace(timestep=t)
  upd = dynamics.StateDynamics().compute_update(
      dynamics.StateDynamics().inverse(state.log_trajectory, state.object_metadata, t),
      state.current_sim_trajectory)
  sim = jax.jit(apply_trajectory_update)(state, upd, state.object_metadata.is_valid)
  written = dt.slice_time(sim, t + 1, 1)
  expected = dt.slice_time(state.log_trajectory, t + 1, 1)
  np.testing.assert_allclose(written.x, expected.x, atol=1e-5)
  np.testing.assert_array_equal(written.valid, expected.valid)
