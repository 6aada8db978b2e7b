"""Shared pytest setup: CPU-only JAX, hypothesis profile, small scenario factories."""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tempfile  # noqa: E402

import hypothesis  # noqa: E402
import jax  # noqa: E402

# Tests compile the same small programs in several places (e.g. a resumed training run
# recompiles its step): a persistent cache shared by the xdist workers saves minutes.
jax.config.update('jax_compilation_cache_dir', os.environ.get(
    'SPACER_JAX_TEST_JIT_CACHE', os.path.join(tempfile.gettempdir(), 'spacer_jax_jit_cache')))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

hypothesis.settings.register_profile('ci', max_examples=30, deadline=None,
                                     derandomize=True, print_blob=True)
hypothesis.settings.load_profile('ci')

SHARED_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', 'shared'))


@pytest.fixture
def two_lane_state():
  """One small unbatched scenario: a straight 2-lane road, 3 cars, 8 object slots."""
  from spacer_jax.sim import builders
  t = 91
  steps = np.arange(t) * 0.1
  x = np.stack([5.0 + 10.0 * steps, 20.0 + 8.0 * steps, 150.0 + 0.0 * steps])
  y = np.stack([-1.75 * np.ones(t), 1.75 * np.ones(t), 1.75 * np.ones(t)])
  valid = np.ones((3, t), bool)
  valid[2, 60:] = False
  traj = builders.trajectory_from_arrays(
      x, y, np.zeros((3, t)), valid, length=np.array([4.5, 4.8, 4.2]),
      width=np.array([1.9, 2.0, 1.8]), num_objects=8)
  meta = builders.metadata_from_arrays(np.array([1, 1, 1]), num_objects=8, sdc_index=0,
                                       is_modeled=np.array([False, True, False]))
  road = [
      builders.Polyline(np.array([[0.0, -3.5], [200.0, -3.5]]), 15, 1),
      builders.Polyline(np.array([[200.0, 3.5], [0.0, 3.5]]), 15, 2),
      builders.Polyline(np.array([[0.0, -1.75], [200.0, -1.75]]), 2, 3),
      builders.Polyline(np.array([[0.0, 1.75], [200.0, 1.75]]), 2, 4),
  ]
  rg = builders.roadgraph_from_polylines(road, num_points=2048)
  return builders.make_state(traj, meta, rg)
