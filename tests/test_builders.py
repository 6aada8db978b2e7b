"""Host-side builders: resampling, padding, directions and overflow errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacer_jax.sim import builders
from spacer_jax.sim.datatypes import DataValidationError


@given(st.lists(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), min_size=2,
                max_size=8), st.floats(0.2, 2.0))
def test_resample_keeps_ends_and_spacing(points, spacing):
  pts = np.asarray(points)
  out = builders.resample_polyline(pts, spacing)
  seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
  if seg.sum() == 0:
    assert len(out) == 1
    return
  np.testing.assert_allclose(out[0, :2], pts[0], atol=1e-9)
  np.testing.assert_allclose(out[-1, :2], pts[-1], atol=1e-9)
  steps = np.linalg.norm(np.diff(out[:, :2], axis=0), axis=1)
  assert steps.max() <= spacing + 1e-6


def test_roadgraph_dirs_ids_and_padding():
  rg = builders.roadgraph_from_polylines(
      [builders.Polyline(np.array([[0, 0, 1.0], [3, 4, 1.0]]), 15, 7),
       builders.Polyline(np.array([[0, 0], [0, -2]]), 2, 9)], num_points=40)
  n = int(rg.valid.sum())
  assert n == 11 + 5
  np.testing.assert_allclose(rg.dir_x[:10], 0.6, atol=1e-6)
  np.testing.assert_allclose(rg.dir_y[:10], 0.8, atol=1e-6)
  assert float(rg.dir_x[10]) == 0 and float(rg.dir_y[10]) == 0  # end of polyline
  assert set(np.asarray(rg.ids[:n]).tolist()) == {7, 9}
  assert int(rg.types[n]) == -1 and float(rg.x[n]) == -1.0
  np.testing.assert_allclose(rg.z[:11], 1.0)


def test_overflow_errors_name_the_limit():
  with pytest.raises(DataValidationError, match='num_points=4'):
    builders.roadgraph_from_polylines(
        [builders.Polyline(np.array([[0, 0], [10, 0]]), 15, 1)], num_points=4)
  with pytest.raises(DataValidationError, match='num_objects=1'):
    builders.trajectory_from_arrays(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)),
                                    np.ones((2, 3), bool), np.ones(2), np.ones(2),
                                    num_objects=1)
  with pytest.raises(DataValidationError, match=r'expected \(P, 2\|3\)'):
    builders.resample_polyline(np.zeros((3, 4)))


def test_velocity_defaults_to_finite_differences():
  x = np.arange(20, dtype=float)[None] * 0.5  # 5 m/s
  traj = builders.trajectory_from_arrays(x, np.zeros_like(x), np.zeros_like(x),
                                         np.ones_like(x, bool), [4.0], [2.0])
  np.testing.assert_allclose(traj.vel_x, 5.0, rtol=1e-5)
  np.testing.assert_allclose(traj.height, 1.5)


@given(st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50)), min_size=2, max_size=8),
       st.floats(0.2, 3.0))
def test_subdivision_keeps_every_vertex_and_the_geometry(points, spacing):
  pts = np.array(points)
  out = builders.subdivide_polyline(pts, spacing)
  # Every recorded vertex, in order, at its own place: vertex k follows the points
  # that the segments before it were split into.
  pieces = np.maximum(np.ceil(np.linalg.norm(np.diff(pts, axis=0), axis=1) / spacing
                              - 1e-9), 1).astype(int)
  idx = np.concatenate([[0], np.cumsum(pieces)])
  assert idx[-1] == len(out) - 1
  np.testing.assert_allclose(out[idx, :2], pts, atol=1e-9)
  # No segment longer than the spacing; inserted points on their segment's line.
  seg = np.linalg.norm(np.diff(out[:, :2], axis=0), axis=1)
  assert np.all(seg <= spacing + 1e-9)
  for k in range(len(pts) - 1):
    a, b = pts[k], pts[k + 1]
    for q in out[idx[k]:idx[k + 1] + 1, :2]:
      cross = (b[0] - a[0]) * (q[1] - a[1]) - (b[1] - a[1]) * (q[0] - a[0])
      assert abs(cross) < 1e-6 * max(1.0, np.linalg.norm(b - a) ** 2)


def test_subdivision_keeps_corners_that_resampling_cuts():
  corner = np.array([[0.0, 0.0], [10.13, 0.0], [10.13, 7.77]])
  sub = builders.subdivide_polyline(corner, 0.5)
  res = builders.resample_polyline(corner, 0.5)
  dist = lambda pts: np.min(np.linalg.norm(pts[:, :2] - [10.13, 0.0], axis=1))
  assert dist(sub) == 0.0 and dist(res) > 0.05
  with pytest.raises(ValueError, match='max_spacing'):
    builders.subdivide_polyline(corner, 0.0)
