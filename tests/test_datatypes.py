"""Datatypes: shapes, derived fields, Waymax conventions and validation errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.sim import builders
from spacer_jax.sim import datatypes as dt


def _batch(state, shape):
  return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, shape + x.shape), state)


@pytest.mark.parametrize('batch', [(), (2,), (2, 1)])
def test_state_shapes_and_current_slices(two_lane_state, batch):
  state = _batch(two_lane_state, batch)
  state.validate()
  assert state.shape == batch
  chex.assert_shape(state.current_sim_trajectory.x, batch + (8, 1))
  chex.assert_shape(state.current_traffic_light.state, batch + (16, 1))
  chex.assert_shape(state.log_trajectory.bbox_corners, batch + (8, 91, 4, 2))
  assert bool(jnp.all(state.is_done == False))  # noqa: E712
  assert bool(jnp.all(state.remaining_timesteps == 90))


def test_bbox_corner_order_front_right_first_counter_clockwise():
  corners = np.asarray(dt.Trajectory.zeros((1, 1)).replace(
      x=jnp.zeros((1, 1)), y=jnp.zeros((1, 1)), yaw=jnp.full((1, 1), np.pi / 2),
      length=jnp.full((1, 1), 4.0), width=jnp.full((1, 1), 2.0)).bbox_corners[0, 0])
  # Facing +y: front-right is (+1, +2), front-left (-1, +2), rear-left (-1, -2).
  np.testing.assert_allclose(corners, [[1, 2], [-1, 2], [-1, -2], [1, -2]], atol=1e-6)
  area = 0.5 * np.sum(corners[:, 0] * np.roll(corners[:, 1], -1)
                      - np.roll(corners[:, 0], -1) * corners[:, 1])
  assert area > 0  # counter-clockwise


def test_invalid_entries_follow_waymax_conventions(two_lane_state):
  log = two_lane_state.log_trajectory
  assert float(log.x[2, 70]) == -1.0 and not bool(log.valid[2, 70])
  assert int(log.timestamp_micros[2, 70]) == -1
  assert float(log.speed[2, 70]) == -1.0 and float(log.vel_yaw[2, 70]) == -1.0
  assert float(log.x[5, 0]) == -1.0  # padding rows
  np.testing.assert_allclose(log.speed[0, 10], 10.0, rtol=1e-5)
  assert int(log.timestamp_micros[0, 3]) == 300_000
  meta = two_lane_state.object_metadata
  assert int(meta.ids[5]) == -1 and not bool(meta.is_valid[5])
  assert int(meta.sdc_index) == 0


@pytest.mark.parametrize('jit', [False, True])
@pytest.mark.parametrize('batch', [(), (2,), (2, 1)])
def test_slice_and_update_time(two_lane_state, jit, batch):
  traj = _batch(two_lane_state.log_trajectory, batch)
  t = jnp.full(batch, 5, jnp.int32)
  slice_fn = jax.jit(dt.slice_time, static_argnums=2) if jit else dt.slice_time
  update_fn = jax.jit(dt.update_time) if jit else dt.update_time
  window = slice_fn(traj, t, 3)
  chex.assert_shape(window.x, batch + (8, 3))
  np.testing.assert_allclose(window.x[..., 0, :], traj.x[..., 0, 5:8])
  new = jax.tree_util.tree_map(lambda x: x[..., :1] * 0 + 7, slice_fn(traj, t, 1))
  written = update_fn(traj, t, new)
  assert bool(jnp.all(written.x[..., 5] == 7))
  assert bool(jnp.all(written.x[..., 6] == traj.x[..., 6]))


def test_slice_time_clamps_past_the_end(two_lane_state):
  window = dt.slice_time(two_lane_state.log_trajectory, jnp.int32(89), 4)
  np.testing.assert_allclose(window.x[0], two_lane_state.log_trajectory.x[0, [89, 90, 90, 90]])


def test_select_objects(two_lane_state):
  picked = dt.select_objects(two_lane_state.log_trajectory, jnp.array([2, 0]))
  np.testing.assert_array_equal(picked.x[0], two_lane_state.log_trajectory.x[2])


@pytest.mark.parametrize('field,bad,match', [
    ('x', lambda a: a[:, :90], r'Trajectory\.x has shape \(8, 90\).*num_timesteps=91'),
    ('yaw', lambda a: a.astype(jnp.float16),
     r'Trajectory\.yaw has dtype float16, expected float32'),
    ('valid', lambda a: a.astype(jnp.int32), r'Trajectory\.valid has dtype int32, expected bool'),
    ('y', lambda a: a.at[1, 4].set(jnp.nan), r'Trajectory\.y holds a non-finite value.*\(1, 4\)'),
    ('length', lambda a: a[None], r'Trajectory\.length has batch shape \(1,\)'),
])
def test_trajectory_validate_names_the_field(two_lane_state, field, bad, match):
  traj = two_lane_state.log_trajectory
  broken = traj.replace(**{field: bad(getattr(traj, field))})
  with pytest.raises(dt.DataValidationError, match=match):
    broken.validate()


def test_nan_in_invalid_entry_is_allowed(two_lane_state):
  traj = two_lane_state.log_trajectory
  traj.replace(x=traj.x.at[6, 4].set(jnp.nan)).validate()  # row 6 is padding


def test_missing_field_and_non_array(two_lane_state):
  rg = two_lane_state.roadgraph_points
  with pytest.raises(dt.DataValidationError, match=r'RoadgraphPoints\.types is missing'):
    rg.replace(types=None).validate()
  with pytest.raises(dt.DataValidationError, match=r'RoadgraphPoints\.ids must be an array'):
    rg.replace(ids=[1, 2]).validate()


def test_state_validate_checks_agreement(two_lane_state):
  s = two_lane_state
  with pytest.raises(dt.DataValidationError, match='timestep has dtype'):
    s.replace(timestep=jnp.asarray(0, jnp.int64 if jax.config.x64_enabled else jnp.float32)
              ).validate()
  with pytest.raises(dt.DataValidationError, match='timestep holds'):
    s.replace(timestep=jnp.asarray(91, jnp.int32)).validate()
  meta = jax.tree_util.tree_map(lambda x: x[:4], s.object_metadata)
  with pytest.raises(dt.DataValidationError, match='object_metadata has 4 objects'):
    s.replace(object_metadata=meta).validate()
  batched_rg = jax.tree_util.tree_map(lambda x: x[None], s.roadgraph_points)
  with pytest.raises(dt.DataValidationError, match='roadgraph_points has batch shape'):
    s.replace(roadgraph_points=batched_rg).validate()
  with pytest.raises(dt.DataValidationError, match='more than one object as the SDC'):
    s.object_metadata.replace(is_sdc=jnp.ones(8, bool)).validate()


def test_traffic_lights_and_paths_validate():
  lights = builders.traffic_lights_from_arrays(
      np.zeros((2, 91)), np.zeros((2, 91)), np.full((2, 91), 4), np.array([[1], [2]]),
      np.ones((2, 91), bool))
  lights.validate()
  assert lights.shape == (16, 91) and bool(dt.is_red(lights.state[0, 0]))
  with pytest.raises(dt.DataValidationError, match=r'TrafficLights\.state'):
    lights.replace(state=lights.state[:, :5]).validate()
  paths = dt.Paths(x=jnp.zeros((3, 10)), y=jnp.zeros((3, 10)), z=jnp.zeros((3, 10)),
                   ids=jnp.zeros((3, 10), jnp.int32), valid=jnp.ones((3, 10), bool),
                   arc_length=jnp.zeros((3, 10)), on_route=jnp.ones((3, 1), bool))
  paths.validate()
  with pytest.raises(dt.DataValidationError, match=r'Paths\.on_route'):
    paths.replace(on_route=jnp.ones((3, 2), bool)).validate()


def test_action_and_update_validate():
  act = dt.Action(data=jnp.zeros((4, 2)), valid=jnp.ones((4, 1), bool))
  act.validate()
  with pytest.raises(dt.DataValidationError, match=r'Action\.valid has shape'):
    dt.Action(data=jnp.zeros((4, 2)), valid=jnp.ones((4,), bool)).validate()
  upd = dt.TrajectoryUpdate(*(jnp.zeros((4, 1)),) * 5, valid=jnp.ones((4, 1), bool))
  upd.validate()
  assert upd.as_action().data.shape == (4, 5)
  merged = dt.merge_updates(upd, upd.replace(x=jnp.ones((4, 1))),
                            jnp.array([True, False, True, False]))
  np.testing.assert_array_equal(merged.x[:, 0], [1, 0, 1, 0])


def test_type_helpers():
  types = jnp.array([0, 2, 3, 6, 13, 14, 15, 16, 17, 18, -1])
  np.testing.assert_array_equal(dt.is_road_edge(types), [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0])
  np.testing.assert_array_equal(dt.is_lane(types), [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(dt.is_road_line(types), [0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0])
