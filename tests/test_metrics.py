"""Known answers, batch shapes, jit/no-jit and validity for every registry metric."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.sim import builders
from spacer_jax.sim.datatypes import Paths, TrafficLightStates
from spacer_jax.sim.metrics import registry, road_edges
from spacer_jax.sim.metrics.base import MetricResult

# A small index keeps the tests fast; the default sizes are exercised by the agreement test.
SMALL = road_edges.RoadEdgeIndexConfig(grid_size=16, block_size=4, candidates_per_cell=16,
                                       candidates_per_block=64)
STRAIGHT_EDGE = [builders.Polyline(np.array([[-50.0, 0.0], [50.0, 0.0]]), 15, 1)]


def boxes_state(x, y, yaw=None, length=4.0, width=2.0, valid=None, roadgraph=None,
                vel_x=None, vel_y=None, types=None, lights=None, paths=None,
                log_xy=None):
  """A state at timestep T-1 from ``(N,)`` (constant) or ``(N, T)`` arrays."""
  x = np.atleast_2d(np.asarray(x, float).T).T if np.ndim(x) == 1 else np.asarray(x, float)
  n = x.shape[0]
  x = x if x.ndim == 2 else x[:, None]
  t = max(x.shape[1], 2)
  full = lambda a, d=0.0: np.broadcast_to(
      np.asarray(d if a is None else a, float).reshape(n, -1) if np.ndim(
          d if a is None else a) else np.asarray(d if a is None else a, float), (n, t))
  x = np.broadcast_to(x, (n, t))
  y = full(y)
  valid = np.ones((n, t), bool) if valid is None else np.broadcast_to(
      np.asarray(valid, bool).reshape(n, -1), (n, t))
  vx, vy = full(vel_x), full(vel_y)
  traj = builders.trajectory_from_arrays(
      x, y, full(yaw), valid, length=np.broadcast_to(length, (n,)),
      width=np.broadcast_to(width, (n,)), vel_x=vx, vel_y=vy)
  log = traj
  if log_xy is not None:
    log = builders.trajectory_from_arrays(
        full(log_xy[0]), full(log_xy[1]), full(yaw), valid,
        length=np.broadcast_to(length, (n,)), width=np.broadcast_to(width, (n,)),
        vel_x=vx, vel_y=vy)
  meta = builders.metadata_from_arrays(np.ones(n, np.int32) if types is None else types)
  rg = roadgraph if roadgraph is not None else builders.roadgraph_from_polylines(
      STRAIGHT_EDGE, 512)
  state = builders.make_state(log, meta, rg, log_traffic_light=lights, sdc_paths=paths)
  return state.replace(sim_trajectory=traj, timestep=jnp.asarray(t - 1, jnp.int32))


def value(result: MetricResult):
  return np.asarray(result.value), np.asarray(result.valid)


def test_overlap_known():
  # 0 and 1 overlap; 2 touches 1 exactly (not an overlap); 3 is invalid and on top of 0.
  s = boxes_state([0.0, 3.0, 7.0, 0.5], [0.0, 0.5, 0.5, 0.0],
                  valid=[True, True, True, False])
  v, ok = value(registry.get_metric('overlap')(s))
  np.testing.assert_array_equal(v, [1, 1, 0, 0])
  np.testing.assert_array_equal(ok, [True, True, True, False])
  # Rotated 45 degrees: the corner of box 1 pokes into box 0.
  s = boxes_state([0.0, 3.3], [0.0, 0.0], yaw=[0.0, np.pi / 4])
  assert value(registry.get_metric('overlap')(s))[0].tolist() == [1, 1]
  s = boxes_state([0.0, 4.2], [0.0, 0.0], yaw=[0.0, np.pi / 4])
  assert value(registry.get_metric('overlap')(s))[0].tolist() == [0, 0]


@pytest.mark.parametrize('use_index', [False, True])
def test_offroad_known(use_index):
  # Edge along +x at y = 0, road on the left (y > 0). Boxes 4 x 2, yaw 0.
  s = boxes_state([0.0, 0.0, 0.0, 0.0], [5.0, -3.0, 0.5, 1.0])
  if use_index:
    s = s.replace(road_edge_index=jax.jit(road_edges.build_road_edge_index, static_argnums=1)(
        s.roadgraph_points, SMALL))
  v, ok = value(registry.get_metric('offroad')(s))
  np.testing.assert_array_equal(v, [0, 1, 1, 0])  # The last one touches: 0 is not > 0.
  d, _ = value(registry.get_metric('distance_to_road_edge')(s))
  np.testing.assert_allclose(d, [-4.0, 4.0, 0.5, 0.0], atol=1e-5)
  assert ok.all()


def test_offroad_without_road_edges_is_invalid():
  lane = [builders.Polyline(np.array([[-50.0, 0.0], [50.0, 0.0]]), 2, 1)]
  s = boxes_state([0.0], [0.0], roadgraph=builders.roadgraph_from_polylines(lane, 256))
  for name in ('offroad', 'distance_to_road_edge'):
    assert not value(registry.get_metric(name)(s))[1].any()
  s = s.replace(road_edge_index=jax.jit(road_edges.build_road_edge_index, static_argnums=1)(
        s.roadgraph_points, SMALL))
  assert not value(registry.get_metric('offroad')(s))[1].any()


def test_log_divergence_known():
  s = boxes_state([0.0, 1.0], [0.0, 1.0], log_xy=([3.0, 1.0], [4.0, 1.0]))
  v, ok = value(registry.get_metric('log_divergence')(s))
  np.testing.assert_allclose(v, [5.0, 0.0])
  assert ok.all()


def test_distance_to_nearest_object_known():
  # Gap of 6 m between 0 and 1; 2 overlaps 1 by 1 m along x; 3 invalid.
  s = boxes_state([0.0, 10.0, 13.0, 1.0], [0.0, 0.0, 0.0, 0.0],
                  valid=[True, True, True, False])
  v, ok = value(registry.get_metric('distance_to_nearest_object')(s))
  np.testing.assert_allclose(v[:3], [6.0, -1.0, -1.0], atol=1e-5)
  np.testing.assert_array_equal(ok, [True, True, True, False])
  # Corner to corner: boxes offset diagonally by (4 + 3, 2 + 4) -> distance 5.
  s = boxes_state([0.0, 7.0], [0.0, 6.0])
  np.testing.assert_allclose(value(registry.get_metric('distance_to_nearest_object')(s))[0],
                             [5.0, 5.0], atol=1e-5)


def test_time_to_collision_known():
  # Follower at 10 m/s, leader 20 m ahead at 5 m/s: gap 16 m, closing 5 m/s -> 3.2 s.
  s = boxes_state([0.0, 20.0, 80.0, 100.0], [0.0, 0.5, 0.0, 0.0],
                  yaw=[0.0, 0.0, np.pi, 0.0], vel_x=[10.0, 5.0, -5.0, 0.0])
  v, ok = value(registry.get_metric('time_to_collision')(s))
  np.testing.assert_allclose(v, [3.2, 5.0, 5.0, 5.0], atol=1e-5)
  assert ok.all()
  # Heading 80 degrees off: not counted.
  s = boxes_state([0.0, 20.0], [0.0, 0.0], yaw=[0.0, np.deg2rad(80)], vel_x=[10.0, 0.0])
  assert value(registry.get_metric('time_to_collision')(s))[0][0] == 5.0


def _lane_and_light(state_value):
  lane = [builders.Polyline(np.array([[-50.0, 0.0], [50.0, 0.0]]), 2, 7),
          builders.Polyline(np.array([[-50.0, 6.0], [50.0, 6.0]]), 2, 8)]
  rg = builders.roadgraph_from_polylines(lane, 512)
  lights = builders.traffic_lights_from_arrays(
      np.zeros((1, 2)), np.zeros((1, 2)), np.full((1, 2), state_value), np.full((1, 2), 7),
      np.ones((1, 2), bool))
  return rg, lights


@pytest.mark.parametrize('light,expected', [(TrafficLightStates.STOP, 1.0),
                                            (TrafficLightStates.ARROW_STOP, 1.0),
                                            (TrafficLightStates.GO, 0.0)])
def test_red_light_violation_known(light, expected):
  rg, lights = _lane_and_light(light)
  # 0 crosses the stop point on lane 7; 1 stays behind it; 2 crosses on lane 8 (the
  # other lane, whose points are nearer); 3 is a pedestrian crossing it.
  s = boxes_state([[-1.0, 1.0], [-3.0, -1.0], [-1.0, 1.0], [-1.0, 1.0]],
                  [0.0, 0.0, 5.5, 0.0], roadgraph=rg, lights=lights, types=[1, 1, 1, 2])
  v, ok = value(registry.get_metric('red_light_violation')(s))
  np.testing.assert_array_equal(v, [expected, 0, 0, 0])
  np.testing.assert_array_equal(ok, [True, True, True, False])


def _paths():
  xs = np.linspace(0.0, 100.0, 201)
  x = np.stack([xs, xs])
  y = np.stack([np.zeros_like(xs), np.full_like(xs, 10.0)])
  return Paths(x=jnp.asarray(x, jnp.float32), y=jnp.asarray(y, jnp.float32),
               z=jnp.zeros(x.shape, jnp.float32), ids=jnp.zeros(x.shape, jnp.int32),
               valid=jnp.ones(x.shape, bool), arc_length=jnp.asarray(x, jnp.float32),
               on_route=jnp.asarray([[True], [False]]))


@pytest.mark.parametrize('sdc_y,wrong_way,off_route', [
    (0.0, 0.0, 0.0), (8.0, 0.0, 8.0), (20.0, 10.0, 20.0), (3.0, 0.0, 0.0)])
def test_route_metrics_known(sdc_y, wrong_way, off_route):
  # The SDC's log goes 0 -> 100 along the on-route path; now at x = 50.
  x = np.array([[0.0, 50.0, 100.0], [5.0, 5.0, 5.0]])
  y = np.array([[0.0, sdc_y, 0.0], [30.0, 30.0, 30.0]])
  s = boxes_state(x, y, paths=_paths())
  s = s.replace(timestep=jnp.asarray(1, jnp.int32))
  for name, want in [('wrong_way', wrong_way), ('off_route', off_route),
                     ('progression', 0.5)]:
    v, ok = value(registry.get_metric(name)(s))
    np.testing.assert_allclose(v, [want, 0.0], atol=1e-4, err_msg=name)
    np.testing.assert_array_equal(ok, [True, False])


def test_route_metrics_need_paths():
  s = boxes_state([0.0], [0.0])
  for name in ('wrong_way', 'off_route', 'progression'):
    assert not value(registry.get_metric(name)(s))[1].any()


def test_registry():
  assert set(registry.registered_metrics()) >= {
      'overlap', 'offroad', 'log_divergence', 'distance_to_nearest_object',
      'time_to_collision', 'distance_to_road_edge', 'red_light_violation', 'wrong_way',
      'progression', 'off_route'}
  with pytest.raises(KeyError, match='registered'):
    registry.get_metric('nope')
  fn = lambda state: MetricResult.create(jnp.zeros(state.object_metadata.shape),
                                         state.object_metadata.is_valid)
  registry.register_metric('zeros_for_test', fn)
  with pytest.raises(ValueError):
    registry.register_metric('zeros_for_test', lambda s: None)
  s = boxes_state([0.0, 3.0], [0.0, 0.0])
  out = registry.run_metrics(s, ('overlap', 'zeros_for_test', 'offroad',
                                 'distance_to_road_edge'))
  assert list(out) == ['overlap', 'zeros_for_test', 'offroad', 'distance_to_road_edge']


def _rich_state():
  """Every metric has something to compute: boxes, edges, a red light, routes."""
  rg, lights = _lane_and_light(TrafficLightStates.STOP)
  polys = STRAIGHT_EDGE + [builders.Polyline(np.array([[-50.0, 0.0], [50.0, 0.0]]), 2, 7)]
  rg = builders.roadgraph_from_polylines(polys, 512)
  x = np.array([[-1.0, 1.0], [4.0, 4.5], [30.0, 30.0], [2.0, 2.0]])
  y = np.array([[1.0, 1.0], [1.5, 1.5], [-2.0, -2.0], [0.5, 0.5]])
  return boxes_state(x, y, yaw=[0.0, 0.3, 1.0, 3.0], roadgraph=rg, lights=lights,
                     vel_x=[10.0, 2.0, 0.0, 1.0], valid=[True, True, True, False],
                     paths=_paths())


ALL = ('overlap', 'offroad', 'log_divergence', 'distance_to_nearest_object',
       'time_to_collision', 'distance_to_road_edge', 'red_light_violation', 'wrong_way',
       'progression', 'off_route')


def _batched(state, shape):
  return jax.tree_util.tree_map(
      lambda a: jnp.broadcast_to(a, shape + a.shape), state)


@pytest.mark.parametrize('batch,jit,use_index', [
    ((), False, True), ((), False, False), ((), True, False), ((2,), True, True),
    ((2, 1), True, True), ((2, 1), True, False)])
def test_all_metrics_batch_shapes(batch, jit, use_index):
  base = _rich_state()
  if use_index:
    base = base.replace(
        road_edge_index=jax.jit(road_edges.build_road_edge_index, static_argnums=1)(
            base.roadgraph_points, SMALL))
  expected = registry.run_metrics(base, ALL)
  state = _batched(base, batch)
  run = (jax.jit(registry.run_metrics, static_argnums=1) if jit
         else registry.run_metrics)
  out = run(state, ALL)
  for name in ALL:
    assert out[name].value.shape == batch + (4,), name
    np.testing.assert_allclose(out[name].value, jnp.broadcast_to(
        expected[name].value, batch + (4,)), atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(out[name].valid, jnp.broadcast_to(
        expected[name].valid, batch + (4,)), err_msg=name)
    # Invalid entries are zeroed, and invalid objects are never valid.
    assert not np.asarray(out[name].valid)[..., 3].any(), name
  # Outer vmap over a batched state gives the same answers.
  if batch == (2,):
    vm = jax.vmap(lambda s: registry.run_metrics(s, ALL))(state)
    for name in ALL:
      np.testing.assert_allclose(vm[name].value, out[name].value, atol=1e-5)


def test_no_retrace():
  import chex
  state = _rich_state()
  fn = jax.jit(chex.assert_max_traces(n=1)(lambda s: registry.run_metrics(s, ALL)))
  fn(state)
  fn(state.replace(timestep=jnp.asarray(0, jnp.int32)))
