"""Fast vs exact: the road-edge index against brute force, SAT overlap against polygon
clipping, hand-computed signed distances, and geometric invariances (hypothesis).

Agreement band: off-road flags of the indexed path must match brute force on >= 99.9%
of objects, and any disagreement must sit within 5 cm of an edge (|brute-force signed
distance| < 0.05 m), where float rounding may legitimately flip a sign.
"""

import functools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.sim import builders, geometry
from spacer_jax.sim.metrics import boxes, offroad, road_edges, testing

BAND = 0.05  # m


@functools.cache
def _maps():
  rng = np.random.default_rng(123)
  return [testing.random_map(rng, num_points=12000) for _ in range(3)]


def _corner_queries(rng, rg, n):
  ob = testing.objects_near_edges(rng, rg, n)
  # A quarter sits at ground level under the bridge edges' height (underpasses).
  ob['z'][: n // 4] = rng.uniform(-0.5, 0.5, n // 4)
  corners = geometry.box_corners(*(jnp.asarray(ob[k], jnp.float32)
                                   for k in ('x', 'y', 'length', 'width', 'yaw')))
  z = jnp.broadcast_to(jnp.asarray(ob['z'], jnp.float32)[:, None, None], (n, 4, 1))
  return jnp.concatenate([corners, z], -1).reshape(n * 4, 3)


@pytest.mark.parametrize('config', [
    None,  # the default build
    # A deeper coarse-to-fine build: its radii must stay rigorous bounds too.
    road_edges.RoadEdgeIndexConfig(coarse_levels=((4, 2048), (16, 512), (64, 128)))],
    ids=['default', 'three_levels'])
def test_offroad_index_agrees_with_brute_force(config):
  rng = np.random.default_rng(7)
  build = jax.jit(lambda rg: road_edges.build_road_edge_index(rg, config))
  fast = jax.jit(road_edges.signed_distance_to_road_edge)
  slow = jax.jit(road_edges.signed_distance_to_road_edge_brute_force)
  n_obj, agree, inexact, total = 600, 0, 0, 0
  for rg in _maps():
    q = _corner_queries(rng, rg, n_obj)
    a, b = fast(q, rg, build(rg)), slow(q, rg)
    da, db = np.asarray(a.distance), np.asarray(b.distance)
    ex = np.asarray(a.exact)
    # Certified answers are bit-for-bit the brute force's.
    np.testing.assert_array_equal(da[ex], db[ex])
    fa = (da.reshape(n_obj, 4) > 0).any(-1)
    fb = (db.reshape(n_obj, 4) > 0).any(-1)
    agree += int((fa == fb).sum())
    total += n_obj
    inexact += int((~ex).sum())
    bad = fa != fb
    if bad.any():
      near = np.abs(db.reshape(n_obj, 4)[bad]).min(-1)
      assert (near < BAND).all(), near
  assert agree / total >= 0.999, (agree, total)
  # Diagnostic: uncertified answers are rare. They concentrate on the forced underpass
  # queries (bridge edges 7 m above crowd the 2D candidate lists).
  assert inexact / (4 * total) < 0.05, inexact


def test_index_levels_must_nest():
  assert road_edges.RoadEdgeIndexConfig().levels() == ((16, 512),)
  levels = ((4, 1024), (16, 256))
  assert road_edges.RoadEdgeIndexConfig(coarse_levels=levels).levels() == levels
  for bad in (((3, 1024),), ((4, 1024), (16, 2048)), ((16, 256), (4, 1024)),
              ((4, 32),)):
    with pytest.raises(ValueError, match='coarse_levels'):
      road_edges.RoadEdgeIndexConfig(coarse_levels=bad)


def test_offroad_metric_uses_index_and_agrees(two_lane_state):
  state = two_lane_state.replace(timestep=jnp.asarray(10, jnp.int32))
  with_index = state.replace(road_edge_index=jax.jit(road_edges.build_road_edge_index)(
      state.roadgraph_points))
  run = jax.jit(offroad.offroad)
  np.testing.assert_array_equal(run(state).value, run(with_index).value)


def _edge_roadgraph(points, z=0.0, spacing=0.5):
  xyz = np.concatenate([np.asarray(points, float), np.full((len(points), 1), z)], 1)
  return builders.roadgraph_from_polylines([builders.Polyline(xyz, 15, 3)], 512, spacing)


@pytest.mark.parametrize('use_index', [False, True])
def test_hand_computed_signed_distances(use_index):
  def sd(rg, q):
    idx = jax.jit(road_edges.build_road_edge_index)(rg) if use_index else None
    out = jax.jit(road_edges.signed_distance_to_road_edge)(
        jnp.asarray(q, jnp.float32), rg, idx)
    assert np.asarray(out.valid).all()
    return np.asarray(out.distance)
  straight = _edge_roadgraph([[-20.0, 0.0], [20.0, 0.0]])
  # Right of an edge heading +x is off road (+), left is on road (-).
  np.testing.assert_allclose(sd(straight, [[0.5, -2.0, 0.0], [0.5, 3.0, 0.0]]),
                             [2.0, -3.0], atol=1e-6)
  # Convex corner: +x then turning right to -y; road on the 270-degree side.
  corner = _edge_roadgraph([[-20.0, 0.0], [0.0, 0.0], [0.0, -20.0]])
  r = np.hypot(0.2, 0.2)
  np.testing.assert_allclose(
      sd(corner, [[-0.2, -0.2, 0.0], [0.2, -0.2, 0.0], [-0.2, 0.2, 0.0],
                  [0.2, 0.2, 0.0]]),
      [r, -r, -r, -r], atol=1e-6)  # The third needs the previous point's half-plane.
  # Overpass: an edge 8 m above is ignored in favour of a farther one at ground level.
  lines = [builders.Polyline(np.array([[-20.0, 1.0, 8.0], [20.0, 1.0, 8.0]]), 15, 1),
           builders.Polyline(np.array([[20.0, 5.0, 0.0], [-20.0, 5.0, 0.0]]), 15, 2)]
  rg = builders.roadgraph_from_polylines(lines, 512)
  np.testing.assert_allclose(sd(rg, [[0.5, 0.0, 0.0]]), [-5.0], atol=1e-6)


# -- overlap against polygon clipping -------------------------------------------------


def _clip_area(subject, clip):
  """Area of convex polygon ``subject`` clipped by convex CCW ``clip`` (numpy)."""
  poly = [tuple(p) for p in subject]
  for i in range(len(clip)):
    a, b = clip[i], clip[(i + 1) % len(clip)]
    inside = lambda p, a=a, b=b: (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (
        p[0] - a[0]) >= 0
    out = []
    for j in range(len(poly)):
      p, q = poly[j], poly[(j + 1) % len(poly)]
      if inside(q):
        if not inside(p):
          out.append(_intersect(p, q, a, b))
        out.append(q)
      elif inside(p):
        out.append(_intersect(p, q, a, b))
    poly = out
    if not poly:
      return 0.0
  x, y = np.array(poly).T
  return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _intersect(p, q, a, b):
  d1, d2 = np.subtract(q, p), np.subtract(b, a)
  cross = lambda u, v: u[0] * v[1] - u[1] * v[0]
  t = cross(np.subtract(a, p), d2) / cross(d1, d2)
  return tuple(np.add(p, t * d1))


def test_overlap_matches_polygon_clipping():
  rng = np.random.default_rng(3)
  n = 40
  x, y = rng.uniform(0, 15, (2, n))
  yaw = rng.uniform(-np.pi, np.pi, n)
  length, width = rng.uniform(1, 6, n), rng.uniform(0.5, 2.5, n)
  args = [jnp.asarray(a, jnp.float32) for a in (x, y, length, width, yaw)]
  got = np.asarray(boxes.pairwise_overlap(*args))
  margin = np.asarray(jnp.min(boxes.sat_margins(*args), -1))
  corners = np.asarray(geometry.box_corners(*args), float)
  checked = 0
  for i in range(n):
    for j in range(i + 1, n):
      if abs(margin[i, j]) < 1e-3:
        continue  # Touching within rounding: either answer is acceptable.
      assert got[i, j] == (_clip_area(corners[i], corners[j]) > 1e-9), (i, j)
      checked += 1
  assert checked > 500
  np.testing.assert_array_equal(got, got.T)


# -- hypothesis properties -------------------------------------------------------------

coord = st.floats(-20.0, 20.0, allow_nan=False, width=32)
angle = st.floats(-3.0, 3.0, allow_nan=False, width=32)
size = st.floats(0.5, 6.0, allow_nan=False, width=32)


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(st.lists(st.tuples(coord, coord, size, size, angle), min_size=2,
                           max_size=6), angle, coord, coord)
def test_overlap_symmetric_and_rigid_invariant(bxs, theta, tx, ty):
  x, y, length, width, yaw = (np.array(c, np.float64) for c in zip(*bxs))
  m0 = np.asarray(jnp.min(boxes.sat_margins(*(jnp.asarray(a, jnp.float32) for a in (
      x, y, length, width, yaw))), -1))
  c, s = np.cos(theta), np.sin(theta)
  x2, y2 = c * x - s * y + tx, s * x + c * y + ty
  moved = [jnp.asarray(a, jnp.float32) for a in (x2, y2, length, width, yaw + theta)]
  m1 = np.asarray(jnp.min(boxes.sat_margins(*moved), -1))
  np.testing.assert_allclose(m0, m0.T, atol=1e-4)
  np.testing.assert_allclose(m0, m1, atol=2e-3)
  o0, o1 = m0 > 0, m1 > 0
  clear = np.abs(m0) > 1e-2
  np.testing.assert_array_equal(o0[clear], o1[clear])


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(st.integers(-8, 8), st.integers(-8, 8), st.integers(1, 8),
                  st.integers(1, 8), st.integers(1, 8), st.integers(1, 8),
                  st.booleans())
def test_touching_boxes_do_not_overlap(x0, y0, l0, w0, l1, w1, along_x):
  # Axis-aligned boxes with dyadic sizes sharing an edge exactly: margin 0.
  half = 0.5
  x1 = x0 + (l0 + l1) * half if along_x else x0
  y1 = y0 if along_x else y0 + (w0 + w1) * half
  args = [jnp.asarray(a, jnp.float32) for a in ([x0, x1], [y0, y1], [l0, l1], [w0, w1],
                                                 [0.0, 0.0])]
  hit = np.asarray(boxes.pairwise_overlap(*args))
  assert not hit[0, 1] and not hit[1, 0]
  assert hit[0, 0] and hit[1, 1]  # A box overlaps itself (the metric excludes i == j).


@functools.cache
def _curve_points():
  rng = np.random.default_rng(5)
  pts = testing._curve(rng, np.zeros(2), 0.3, 60.0, max_curvature=0.05)
  return pts


@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(angle, coord, coord)
def test_signed_distance_rigid_invariant(theta, tx, ty):
  pts = _curve_points()
  rng = np.random.default_rng(11)
  q = pts[rng.integers(len(pts), size=32)] + rng.uniform(-4, 4, (32, 2))
  c, s = np.cos(theta), np.sin(theta)
  rot = lambda p: np.stack([c * p[:, 0] - s * p[:, 1] + tx, s * p[:, 0] + c * p[:, 1] + ty],
                           -1)
  out = []
  for p, qq in ((pts, q), (rot(pts), rot(q))):
    rg = _edge_roadgraph(p, spacing=None)  # Same samples before and after the move.
    qz = jnp.asarray(np.concatenate([qq, np.zeros((len(qq), 1))], 1), jnp.float32)
    out.append(np.asarray(road_edges.signed_distance_to_road_edge_brute_force(qz, rg)
                          .distance))
  np.testing.assert_allclose(np.abs(out[0]), np.abs(out[1]), atol=2e-3)
  clear = np.abs(out[0]) > 0.05
  np.testing.assert_array_equal(np.sign(out[0][clear]), np.sign(out[1][clear]))
