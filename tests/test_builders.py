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
