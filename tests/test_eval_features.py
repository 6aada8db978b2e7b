"""Known-answer tests of the WOSAC features (spacer_jax.eval features, road_edge,
red_light)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.eval import features, red_light, road_edge
from spacer_jax.sim import builders
from spacer_jax.sim.datatypes import TrafficLightStates
from spacer_jax.sim.metrics import boxes, road_edges

SMALL_INDEX = road_edges.RoadEdgeIndexConfig(grid_size=16, block_size=4,
                                             candidates_per_cell=16,
                                             candidates_per_block=64)


# -- kinematics ---------------------------------------------------------------------------


def test_kinematics_straight_line_and_turn_across_pi():
  t = np.arange(20) * 0.1
  heading = 0.3
  x, y = 10.0 * t * np.cos(heading), 10.0 * t * np.sin(heading)
  z = 0.5 * t  # climbing: the 3D speed counts it
  yaw = np.pi - 0.5 + 0.2 * t  # constant 0.2 rad/s through the +-pi wrap
  yaw = (yaw + np.pi) % (2 * np.pi) - np.pi
  k = features.kinematic_features(*(jnp.asarray(v, jnp.float32) for v in (x, y, z, yaw)))
  speed = np.asarray(k.linear_speed)
  assert np.isnan(speed[[0, -1]]).all()
  np.testing.assert_allclose(speed[1:-1], math.hypot(10.0, 0.5), rtol=1e-4)
  accel = np.asarray(k.linear_acceleration)
  assert np.isnan(accel[[0, 1, -2, -1]]).all()
  np.testing.assert_allclose(accel[2:-2], 0.0, atol=2e-3)
  np.testing.assert_allclose(np.asarray(k.angular_speed)[1:-1], 0.2, atol=1e-4)
  np.testing.assert_allclose(np.asarray(k.angular_acceleration)[2:-2], 0.0, atol=2e-3)


def test_kinematics_batched_and_accelerating():
  t = np.arange(12) * 0.1
  x = np.stack([2.0 * t**2 / 2, 5.0 * t])  # (2, T): accel 2 m/s^2, then constant speed
  zeros = np.zeros_like(x)
  k = features.kinematic_features(jnp.asarray(x), jnp.asarray(zeros), jnp.asarray(zeros),
                                  jnp.asarray(zeros))
  np.testing.assert_allclose(np.asarray(k.linear_speed)[0, 1:-1], 2.0 * t[1:-1],
                             rtol=1e-4)
  np.testing.assert_allclose(np.asarray(k.linear_acceleration)[:, 2:-2],
                             [[2.0] * 8, [0.0] * 8], atol=1e-3)


def test_kinematic_validity_needs_both_neighbours():
  valid = jnp.array([True, True, True, False, True, True, True, True])
  speed_ok, accel_ok = features.kinematic_validity(valid)
  assert np.asarray(speed_ok).tolist() == [False, True, False, True, False, True, True,
                                           False]
  # Accelerations use speeds at t-1 and t+1, i.e. positions t-2, t, t+2.
  assert np.asarray(accel_ok).tolist() == [False, False, True, False, True, False, False,
                                           False]


# -- object distances -----------------------------------------------------------------------


def _dist(a, b, rounded=True):
  fn = features.rounded_box_signed_distance if rounded else features.box_signed_distance
  return float(fn(*(jnp.float32(v) for v in (*a, *b))))


def test_box_distance_known_answers():
  car = (4.0, 2.0, 0.0)  # length, width, heading
  at = lambda x, y, h=0.0: (x, y, car[0], car[1], h)
  assert _dist(at(0, 0), at(5, 0), rounded=False) == pytest.approx(1.0)  # bumper gap
  assert _dist(at(0, 0), at(3, 0), rounded=False) == pytest.approx(-1.0)  # 1 m overlap
  assert _dist(at(0, 0), at(5, 3), rounded=False) == pytest.approx(math.sqrt(2), rel=1e-5)
  # Rotated 90 deg: b's half length is now across x.
  assert _dist(at(0, 0), at(4, 0, math.pi / 2), rounded=False) == pytest.approx(1.0)
  # Rounded corners (radius 0.7 * 2 / 2 = 0.7): flat sides unchanged, corners farther.
  assert _dist(at(0, 0), at(5, 0)) == pytest.approx(1.0, abs=1e-5)
  assert _dist(at(0, 0), at(5, 3)) == pytest.approx(2.4 * math.sqrt(2) - 1.4, rel=1e-5)
  assert _dist(at(0, 0), at(3, 0)) == pytest.approx(-1.0, abs=1e-5)


def test_sharp_distance_matches_simulator_boxes():
  rng = np.random.default_rng(0)
  x, y = rng.uniform(-8, 8, (2, 24))
  length, width = rng.uniform(1, 6, 24), rng.uniform(0.5, 2.5, 24)
  yaw = rng.uniform(-np.pi, np.pi, 24)
  args = [jnp.asarray(v, jnp.float32) for v in (x, y, length, width, yaw)]
  expected = np.asarray(jax.jit(boxes.pairwise_signed_distance)(*args))
  got = np.asarray(jax.jit(features.box_signed_distance)(
      *(a[:, None] for a in args), *(a[None, :] for a in args)))
  np.testing.assert_allclose(got, expected, atol=1e-4)


def test_distance_to_nearest_object_masks_invalid_and_self():
  # Three cars in a row, 1 m bumper gaps; car 2 is invalid at step 1.
  x = jnp.array([[0.0, 0.0], [5.0, 5.0], [10.0, 10.0]])
  y = jnp.zeros((3, 2))
  size = lambda v: jnp.full((3, 2), v)
  valid = jnp.array([[True, True], [True, True], [True, False]])
  nearest = jax.jit(features.distance_to_nearest_object)
  d = nearest(x, y, size(4.0), size(2.0), y, valid, jnp.array([0, 2]))
  np.testing.assert_allclose(np.asarray(d[0]), [1.0, 1.0], atol=1e-5)
  assert float(d[1, 0]) == pytest.approx(1.0, abs=1e-5)
  assert float(d[1, 1]) == features.FAR_DISTANCE  # invalid itself: no valid pair
  alone = nearest(x[:1], y[:1], size(4.0)[:1], size(2.0)[:1], y[:1], valid[:1],
                  jnp.array([0]))
  assert np.all(np.asarray(alone) == features.FAR_DISTANCE)


# -- time to collision ----------------------------------------------------------------------


def _ttc(leader_xy, leader_yaw, speeds, ego_yaw=0.0, leader_valid=True):
  x = jnp.array([[0.0], [leader_xy[0]]])
  y = jnp.array([[0.0], [leader_xy[1]]])
  yaw = jnp.array([[ego_yaw], [leader_yaw]])
  size = lambda v: jnp.full((2, 1), v)
  valid = jnp.array([[True], [leader_valid]])
  out = _ttc_jit(x, y, size(4.0), size(2.0), yaw, jnp.array([[speeds[0]], [speeds[1]]]),
                 valid, jnp.array([0]))
  return float(out[0, 0])


_ttc_jit = jax.jit(features.time_to_collision)


def test_time_to_collision_known_answers():
  # 10 m centre gap, 4 m cars: 6 m bumper gap, closing at 5 m/s.
  assert _ttc((10.0, 0.0), 0.0, (10.0, 5.0)) == pytest.approx(1.2, rel=1e-5)
  assert _ttc((10.0, 0.0), 0.0, (5.0, 10.0)) == 5.0  # leader faster
  assert _ttc((40.0, 0.0), 0.0, (10.0, 5.0)) == 5.0  # 7 s, capped
  assert _ttc((10.0, 0.0), 0.0, (10.0, 5.0), leader_valid=False) == 5.0
  assert _ttc((-10.0, 0.0), 0.0, (10.0, 5.0)) == 5.0  # behind
  assert _ttc((10.0, 0.0), math.radians(100), (10.0, 5.0)) == 5.0  # crossing
  # 30 deg apart: counts with a large lateral overlap, not with a small one.
  assert _ttc((12.0, 0.0), math.radians(30), (10.0, 5.0)) < 5.0
  assert _ttc((12.0, 2.6), math.radians(30), (10.0, 5.0)) == 5.0
  # The evaluator does not wrap heading differences: pi - 0.05 vs -pi + 0.05 is excluded.
  assert _ttc((-10.0, 0.0), -math.pi + 0.05, (10.0, 5.0), ego_yaw=math.pi - 0.05) == 5.0
  assert _ttc((-10.0, 0.0), math.pi - 0.04, (10.0, 5.0), ego_yaw=math.pi - 0.05) < 5.0


# -- road edges ------------------------------------------------------------------------------


_build = jax.jit(road_edge.build_road_edge_segments, static_argnums=1)


@jax.jit
def _both_ways(q, segments):
  """Fast answers (index + up to 64 brute-force fallbacks), index-only certificates
  and the brute force."""
  d, unresolved = road_edge.signed_distance_to_road_edges(q, segments, max_fallback=64)
  _, exact = road_edge.indexed_road_edge_distances(q, segments)
  brute = road_edge.signed_distance_to_road_edges_brute_force(q, segments)
  return d, unresolved, exact, brute


def _segments(polylines, num_points=1024):
  rg = builders.roadgraph_from_polylines(polylines, num_points=num_points, spacing=None)
  return _build(rg, SMALL_INDEX)


def _signed(segments, points):
  points = np.asarray(points, np.float32)
  num = len(points)
  q = np.zeros((256, 3), np.float32)  # one shape for every test: one compilation
  q[:num] = points
  d, unresolved, exact, brute = _both_ways(jnp.asarray(q), segments)
  assert int(unresolved) == 0
  np.testing.assert_allclose(np.asarray(d), np.asarray(brute), atol=1e-5)
  return np.asarray(d)[:num], np.asarray(exact)[:num]


def test_road_edge_straight_edge_sides_and_ends():
  seg = _segments([builders.Polyline(np.array([[0.0, 0, 0], [10, 0, 0], [20, 0, 0]]), 15,
                                     1)])
  d = _signed(seg, [[5, 2, 0], [5, -3, 0], [25, 1, 0], [-3, -4, 0]])[0]
  np.testing.assert_allclose(d, [-2.0, 3.0, -math.sqrt(26), 5.0], rtol=1e-5)


def test_road_edge_convex_and_concave_corners():
  # Road on the left of the direction of travel.
  convex = _segments([builders.Polyline(np.array([[0.0, 0], [10, 0], [10, 10]]), 15, 1)])
  np.testing.assert_allclose(_signed(convex, [[12, -2, 0], [8, 2, 0]])[0],
                             [math.sqrt(8), -2.0], rtol=1e-5)
  concave = _segments([builders.Polyline(np.array([[0.0, 0], [10, 0], [10, -10]]), 16,
                                         2)])
  np.testing.assert_allclose(_signed(concave, [[12, 2, 0], [8, -2, 0]])[0],
                             [-math.sqrt(8), 2.0], rtol=1e-5)


def test_road_edge_z_stretch_picks_the_right_level_and_counts_unknown_type():
  lower = builders.Polyline(np.array([[0.0, 0, 0], [10, 0, 0]]), 14, 1)  # unknown type
  upper = builders.Polyline(np.array([[10.0, 1, 6], [0, 1, 6]]), 15, 2)  # overpass
  seg = _segments([lower, upper])
  # Planar-nearest is the other level in both cases; the stretched z decides.
  np.testing.assert_allclose(_signed(seg, [[5, 0.5, 0.1], [5, 0.4, 5.9]])[0], [-0.5, -0.6],
                             rtol=1e-4)


def test_road_edge_index_matches_brute_force_on_a_map():
  rng = np.random.default_rng(1)
  lines = []
  for k in range(6):
    centre, radius = rng.uniform(-60, 60, 2), rng.uniform(8, 25)
    ang = np.linspace(0, 2 * np.pi, 40)[::-1]  # clockwise loops: islands in the road
    lines.append(builders.Polyline(np.stack([centre[0] + radius * np.cos(ang),
                                             centre[1] + radius * np.sin(ang)], -1), 16, k))
  seg = _segments(lines)
  # Queries within 10 m of the edges, where agents are.
  pts = np.concatenate([line.xyz for line in lines])
  near = pts[rng.integers(0, len(pts), 256)] + rng.uniform(-10, 10, (256, 2))
  q = np.concatenate([near, np.zeros((256, 1))], -1)
  d, exact = _signed(seg, q)  # also checks the answers against the brute force
  assert (d > 0).any() and (d < 0).any()
  assert exact.mean() > 0.75  # most queries are certified without the fallback


def test_road_edge_fallback_resolves_every_query_far_off_the_map():
  """Rollouts that leave the map put many queries far outside the index: the fallback
  redoes them in rounds of its budget until every answer is exact."""
  rng = np.random.default_rng(2)
  lines = [builders.Polyline(np.stack([np.linspace(-40, 40, 30), 3.0 * np.sin(
      np.linspace(0, 6, 30)) + 10 * k], -1), 15, k) for k in range(3)]
  seg = _segments(lines)
  far = rng.uniform(300, 900, (256, 2)) * rng.choice([-1, 1], (256, 2))
  q = jnp.asarray(np.concatenate([far, np.zeros((256, 1))], -1), jnp.float32)
  _, exact = road_edge.indexed_road_edge_distances(q, seg)
  assert int((~exact).sum()) > 64  # more than one budget of the fallback
  d, unresolved, _, brute = _both_ways(q, seg)  # budget 64 per round
  assert int(unresolved) == 0
  np.testing.assert_allclose(np.asarray(d), np.asarray(brute), atol=1e-4)
  # One round only: what is left over is counted, not silently kept.
  _, left = jax.jit(functools.partial(road_edge.refine_road_edge_distances,
                                      max_fallback=64, max_rounds=1))(
      q, jnp.zeros(256), ~exact, seg)
  assert int(left) == int((~exact).sum()) - 64


def test_road_edge_without_edges_is_nan():
  empty = _segments([builders.Polyline(np.array([[0.0, 0], [20, 0]]), 2, 1)])  # a lane
  q = jnp.zeros((256, 3)).at[0].set(jnp.array([5.0, 2.0, 0.0]))
  d, unresolved, _, brute = _both_ways(q, empty)
  assert np.isnan(np.asarray(d)).all() and np.isnan(np.asarray(brute)).all()
  assert int(unresolved) == 0


# -- red lights -------------------------------------------------------------------------------


def _red_light_case(state: int, lane_y: float = 0.0):
  """Lane 7 along x at y=0 from x=100 (stop point at 110), a parallel lane 8 at y=5."""
  road = [builders.Polyline(np.array([[100.0, 0], [130, 0]]), 2, 7),
          builders.Polyline(np.array([[100.0, 5], [120, 5]]), 2, 8)]
  rg = builders.roadgraph_from_polylines(road, num_points=256)
  t = 4
  tl = builders.traffic_lights_from_arrays(
      x=np.full((1, t), 110.0), y=np.zeros((1, t)), state=np.full((1, t), state),
      lane_ids=np.full((1, t), 7), valid=np.ones((1, t), bool))
  # One vehicle crossing x = 110 between steps 1 and 2.
  xy = jnp.array([[[107.0, lane_y], [109.0, lane_y], [111.0, lane_y], [113.0, lane_y]]])
  return _red_light(rg, tl, xy)


@jax.jit
def _red_light(rg, tl, xy):
  lines = red_light.build_stop_lines(rg, tl, first_step=1, max_lane_points=128)
  return red_light.red_light_violations(xy, jnp.ones((1, 3), bool), lines,
                                           max_checks=4)


def test_red_light_violation_known_answers():
  hit, unchecked = _red_light_case(TrafficLightStates.STOP)
  assert np.asarray(hit).tolist() == [[False, True, False]]
  assert int(unchecked) == 0
  assert not np.asarray(_red_light_case(TrafficLightStates.ARROW_GO)[0]).any()
  assert np.asarray(_red_light_case(TrafficLightStates.ARROW_STOP)[0]).any()
  # Crossing the same line on the neighbouring lane is not a violation.
  assert not np.asarray(_red_light_case(TrafficLightStates.STOP, lane_y=5.0)[0]).any()
