"""Realism statistics on hand-made logs with known speeds, accelerations, gaps and
distances; the dataset summary's counts and histogram percentiles."""

import jax
import numpy as np
import pytest

from spacer_jax.data import stats
from spacer_jax.sim import builders

T = 91
t = np.arange(T) * 0.1
L = 4.0  # every car is 4 m long


@pytest.fixture(scope='module')
def scene():
  """Straight road between edges at y = -3.5 (boundary, along +x) and y = +3.5 (median,
  along -x). Row 0: car in the right lane, v = 10 + 0.2 t. Row 1: its leader, 40 m
  ahead at 12 m/s, invalid in the last 11 steps. Row 2: an oncoming car in the other
  lane (never a leader). Row 3: a pedestrian standing on the sidewalk at y = -5,
  turning at 0.5 rad/s through the +-pi wrap."""
  x = np.stack([10 * t + 0.1 * t ** 2, 40 + 12 * t, 150 - 5 * t, np.full(T, 20.0)])
  y = np.stack([np.full(T, -1.75), np.full(T, -1.75), np.full(T, 1.75), np.full(T, -5.0)])
  yaw = np.stack([np.zeros(T), np.zeros(T), np.full(T, np.pi), 3.0 + 0.5 * t])
  yaw = (yaw + np.pi) % (2 * np.pi) - np.pi
  vx = np.stack([10 + 0.2 * t, np.full(T, 12.0), np.full(T, -5.0), np.zeros(T)])
  valid = np.ones((4, T), bool)
  valid[1, 80:] = False
  traj = builders.trajectory_from_arrays(
      x, y, yaw, valid, length=np.array([L, L, L, 0.5]), width=np.array([2.0, 2, 2, 0.5]),
      vel_x=vx, vel_y=np.zeros((4, T)), num_objects=6)
  meta = builders.metadata_from_arrays(np.array([1, 1, 1, 2]), num_objects=6, sdc_index=0)
  road = [builders.Polyline(np.array([[-50.0, -3.5], [220.0, -3.5]]), 15, 1),
          builders.Polyline(np.array([[220.0, 3.5], [-50.0, 3.5]]), 16, 2),
          builders.Polyline(np.array([[-50.0, -1.75], [220.0, -1.75]]), 2, 3)]
  return builders.make_state(traj, meta, builders.roadgraph_from_polylines(road, 2048))


def _batch(state, shape):
  return jax.tree_util.tree_map(lambda x: np.broadcast_to(np.asarray(x), shape + x.shape),
                                state)


def test_kinematics_known_values(scene):
  k = stats.kinematics(_batch(scene, (1,)))
  speed, ok = k['speed']
  np.testing.assert_allclose(speed[0, 0], 10 + 0.2 * t, rtol=1e-6)
  assert not ok[0, 1, 85] and not ok[0, 4].any()
  accel, ok = k['accel']
  np.testing.assert_allclose(accel[0, 0], 0.2, atol=1e-4)
  np.testing.assert_allclose(accel[0, 2], 0.0, atol=1e-6)  # -5 m/s along yaw = pi
  assert ok[0, 1].sum() == 79
  rate, ok = k['yaw_rate']
  np.testing.assert_allclose(rate[0, 3], 0.5, atol=1e-4)  # across the +-pi wrap too


def test_leader_gap_same_lane_same_direction_only(scene):
  gap, ok = stats.leader_gaps(_batch(scene, (1,)))
  lead_valid = np.arange(T) < 80
  np.testing.assert_array_equal(ok[0, 0], lead_valid)
  expected = 40 + 12 * t - (10 * t + 0.1 * t ** 2) - L
  np.testing.assert_allclose(gap[0, 0][lead_valid], expected[lead_valid], atol=1e-3)
  # The leader has nobody ahead; the oncoming car has no same-direction leader.
  # (Pedestrians are left out by the statistics, not here.)
  assert not ok[0, 1:3].any()


def test_road_edge_distance_signs(scene):
  d, ok = stats.road_edge_distances(_batch(scene, (1,)))
  # Distances are to the nearest edge *sample* (0.5 m apart, as in Waymax): up to
  # sqrt(1.75^2 + 0.25^2) - 1.75 = 0.018 m more than to the line.
  tol = 0.018
  np.testing.assert_allclose(d[0, 0][ok[0, 0]], -1.75 - tol / 2, atol=tol / 2)  # on road
  np.testing.assert_allclose(d[0, 2][ok[0, 2]], -1.75 - tol / 2, atol=tol / 2)  # median side
  np.testing.assert_allclose(d[0, 3][ok[0, 3]], 1.5, atol=1e-3)  # sidewalk: off road
  assert ok[0, 0].all() and not ok[0, 4].any()


@pytest.mark.parametrize('shape', [(), (2,), (2, 1)])
def test_realism_stats_distributions(scene, shape):
  result = stats.realism_stats([_batch(scene, shape)])
  reps = int(np.prod(shape))
  assert result.num_scenarios == reps
  assert result.num_objects == {'vehicle': 3 * reps, 'pedestrian': reps, 'cyclist': 0}
  assert result.stationary_fraction['pedestrian'] == 1.0
  assert result.stationary_fraction['vehicle'] == 0.0
  d = result.distributions
  veh_speed = np.concatenate([10 + 0.2 * t, np.full(80, 12.0), np.full(T, 5.0)])
  got = d['speed']['vehicle']
  assert got.count == veh_speed.size * reps
  np.testing.assert_allclose([got.p5, got.p50, got.p95, got.mean],
                             [*np.percentile(veh_speed, [5, 50, 95]), veh_speed.mean()],
                             rtol=1e-5)
  lead = slice(0, 80)
  gaps = (40 + 12 * t - (10 * t + 0.1 * t ** 2) - L)[lead]
  np.testing.assert_allclose(d['gap']['vehicle'].p50, np.percentile(gaps, 50), rtol=1e-4)
  headway = gaps / (10 + 0.2 * t)[lead]
  np.testing.assert_allclose(d['time_headway']['vehicle'].mean, headway.mean(), rtol=1e-4)
  assert d['gap']['pedestrian'].count == 0 and np.isnan(d['gap']['pedestrian'].mean)
  np.testing.assert_allclose(d['road_edge_distance']['pedestrian'].p50, 1.5, atol=1e-3)
  np.testing.assert_allclose(d['yaw_rate']['pedestrian'].p95, 0.5, atol=1e-3)
  text = result.table()
  assert 'time_headway [s]' in text and 'pedestrian 100.0%' in text
  assert result.to_json()['distributions']['speed']['vehicle']['count'] == got.count


def test_dataset_summary_counts_and_percentiles(scene):
  one = stats.DatasetSummary.of_state(scene)
  assert one.num_scenarios == 1
  assert one.valid_objects == {'vehicle': 3, 'pedestrian': 1, 'cyclist': 0}
  two = one.merge(stats.DatasetSummary.of_state(_batch(scene, (1,))))
  assert two.num_scenarios == 2 and two.mean_valid_objects == 4.0
  assert sum(two.speed_histogram['vehicle']) == 2 * (T + 80 + T)
  p = two.speed_percentiles('vehicle')
  veh_speed = np.concatenate([10 + 0.2 * t, np.full(80, 12.0), np.full(T, 5.0)])
  for q in (5, 50, 95):  # within one histogram bin
    assert abs(p[f'p{q}'] - np.percentile(veh_speed, q)) <= stats.SPEED_BIN
  back = stats.DatasetSummary.from_json(two.to_json())
  assert back == two
  assert np.isnan(two.speed_percentiles('cyclist')['p50'])
  assert 'mean valid objects per scenario: 4.0' in two.table()
