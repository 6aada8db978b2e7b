"""WOSAC road-edge distances on a real WOMD map: the map as recorded.

The Scenario reader keeps every recorded vertex (long segments split on their own
line), so the road-edge geometry is the recorded one: the WOSAC distance_to_road_edge
features computed through the certified index equal the brute-force distances to the
recorded polylines, for log replay and for rollouts that leave the log.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.data.womd import records, scenario_proto
from spacer_jax.eval import realism, road_edge
from spacer_jax.sim.datatypes import INIT_STEPS

SAMPLES = Path(__file__).parents[1] / '..' / 'shared' / 'data' / 'womd_samples'
SCENARIO_FILE = SAMPLES / 'motion_data_one_scenario.tfrecord'
EDGE_TYPES = (14, 15, 16)


@pytest.fixture(scope='module')
def scenario():
  if not SCENARIO_FILE.exists():
    pytest.skip(f'real WOMD sample {SCENARIO_FILE} not present (shared data folder absent)')
  (_, data), = list(records.read_records(str(SCENARIO_FILE)))
  return scenario_proto.parse_scenario(data)


def _state(scenario, spacing):
  raw = scenario_proto.scenario_to_raw(scenario, spacing)
  return scenario_proto.raw_to_state(raw, 128, 40000)


def test_every_recorded_road_edge_vertex_is_in_the_map(scenario):
  state = _state(scenario, scenario_proto.MAP_SPACING_M)
  rg = state.roadgraph_points
  edge = np.asarray(rg.valid) & np.isin(np.asarray(rg.types), EDGE_TYPES)
  xy = np.stack([np.asarray(rg.x)[edge], np.asarray(rg.y)[edge]], -1)
  vertices = np.array([[p.x, p.y] for f in scenario.map_features
                       if f.WhichOneof('feature_data') == 'road_edge'
                       for p in f.road_edge.polyline])
  assert len(vertices) > 500
  nearest = np.min(np.linalg.norm(xy[None] - vertices[:, None], axis=-1), axis=1)
  assert nearest.max() < 1e-3  # float32 storage of world coordinates
  ids = np.asarray(rg.ids)[edge]
  step = np.linalg.norm(np.diff(xy, axis=0), axis=1)[ids[1:] == ids[:-1]]
  assert step.max() <= scenario_proto.MAP_SPACING_M + 1e-3


def _rollouts(log, rng, noise):
  """(R = 2, N, 80) future: the log plus a growing random drift (noise m at 8 s), valid
  where the log is."""
  fut = jax.tree.map(lambda a: jnp.broadcast_to(a[..., INIT_STEPS:],
                                                (2,) + a[..., INIT_STEPS:].shape), log)
  ramp = jnp.linspace(0.0, 1.0, fut.x.shape[-1])
  dx = noise * jax.random.normal(rng, fut.x.shape[:-1] + (1,)) * ramp
  dy = noise * jax.random.normal(jax.random.fold_in(rng, 1), dx.shape) * ramp
  return fut.replace(x=fut.x + dx, y=fut.y + dy)


def _constant_velocity(log):
  """(R = 1, N, 80): every object valid at the current step driving on at its current
  velocity and heading for 8 s (tens of metres off the mapped road for many)."""
  now = INIT_STEPS - 1
  t = jnp.arange(1, log.x.shape[-1] - now) * 0.1
  fut = jax.tree.map(lambda a: a[..., INIT_STEPS:], log)
  x = log.x[..., now:now + 1] + log.vel_x[..., now:now + 1] * t
  y = log.y[..., now:now + 1] + log.vel_y[..., now:now + 1] * t
  hold = lambda a: jnp.broadcast_to(a[..., now:now + 1], fut.x.shape)
  fut = fut.replace(x=x, y=y, z=hold(log.z), yaw=hold(log.yaw),
                    valid=jnp.broadcast_to(log.valid[..., now:now + 1], fut.x.shape))
  return jax.tree.map(lambda a: a[None], fut)


@pytest.mark.parametrize('kind', ['log', 'drift', 'constant_velocity'])
def test_road_edge_distances_equal_brute_force_on_the_recorded_polylines(scenario, kind):
  """Box-corner queries of every valid object (the log's future, the log with a random
  drift growing to 3 m, or constant velocity from the current step, which leaves the
  map): the certified index on the subdivided map, with its fallback, answers what the
  brute force gives over the recorded vertices alone."""
  subdivided = _state(scenario, scenario_proto.MAP_SPACING_M)
  recorded = _state(scenario, 1e9)  # No point inserted: the recorded polylines.
  noise = 3.0 if kind == 'drift' else 0.0
  fut = (_constant_velocity(subdivided.log_trajectory) if kind == 'constant_velocity'
         else _rollouts(subdivided.log_trajectory, jax.random.key(0), noise))
  box = {n: getattr(fut, n)[0] for n in ('x', 'y', 'z', 'yaw', 'length', 'width',
                                          'height')}
  ok = np.asarray(fut.valid[0])
  query = np.asarray(realism._road_query(box))[ok].reshape(-1, 3)  # (Q, 3)
  assert len(query) > 10_000
  fast_edges = road_edge.build_road_edge_segments(subdivided.roadgraph_points)
  exact_edges = road_edge.build_road_edge_segments(recorded.roadgraph_points)
  # With the realism pipeline's fallback budget per scenario.
  budget = realism.RealismOptions().road_edge_fallback
  fast, unresolved = jax.jit(road_edge.signed_distance_to_road_edges, static_argnums=2)(
      query, fast_edges, budget)
  assert int(unresolved) == 0
  brute = jax.jit(road_edge.signed_distance_to_road_edges_brute_force)
  exact = np.concatenate([np.asarray(brute(query[i:i + 4096], exact_edges))
                          for i in range(0, len(query), 4096)])
  np.testing.assert_allclose(np.asarray(fast), exact, atol=1e-4)
  # The resampled map (before this reader kept the vertices) was off by decimetres.
  if kind == 'log':
    moved = road_edge.build_road_edge_segments(_resampled(scenario).roadgraph_points)
    off = np.concatenate([np.asarray(brute(query[i:i + 4096], moved))
                          for i in range(0, len(query), 4096)])
    assert np.abs(off - exact).max() > 0.05


def _resampled(scenario):
  """The map as the reader built it before: every polyline resampled to 0.5 m."""
  from unittest import mock

  from spacer_jax.sim import builders
  with mock.patch.object(scenario_proto, 'subdivide_polyline', builders.resample_polyline):
    return _state(scenario, scenario_proto.MAP_SPACING_M)
