"""WOMD tf.Example reader/writer: real sample, Waymax conventions, selection, round trip."""

from __future__ import annotations

import collections
from pathlib import Path

import hypothesis
import hypothesis.strategies as st
import jax
import numpy as np
import pytest

from spacer_jax.data.womd import assemble, records, synthetic, tf_example
from spacer_jax.data.womd.errors import RecordError
from spacer_jax.sim.datatypes import Paths

SAMPLES = Path(__file__).parents[1] / '..' / 'shared' / 'data' / 'womd_samples'
EXAMPLE_FILE = SAMPLES / 'motion_data_one_example.tfrecord'
needs_sample = pytest.mark.skipif(
    not EXAMPLE_FILE.exists(),
    reason=f'real WOMD sample {EXAMPLE_FILE} not present (shared data folder absent)')


def assert_states_equal(a, b) -> None:
  """Every leaf identical: same shape, dtype and values."""
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
    x, y = np.asarray(x), np.asarray(y)
    name = jax.tree_util.keystr(path)
    assert x.shape == y.shape, name
    assert x.dtype == y.dtype, name
    np.testing.assert_array_equal(x, y, err_msg=name)


# --- Brute-force Waymax metrics (numpy), to sanity-check real logs. -----------------

def box_corners(x, y, length, width, yaw) -> np.ndarray:
  """(4, 2) corners, front-right first, counter-clockwise."""
  local = np.array([[0.5, -0.5], [0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5]]) * [length, width]
  c, s = np.cos(yaw), np.sin(yaw)
  return local @ np.array([[c, s], [-s, c]]) + [x, y]


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> bool:
  """Separating-axis test on both boxes' axes; touching is not overlapping."""
  for box in (a, b):
    for k in range(2):
      edge = box[k + 1] - box[k]
      axis = np.array([-edge[1], edge[0]])
      pa, pb = a @ axis, b @ axis
      if min(pa.max(), pb.max()) - max(pa.min(), pb.min()) <= 0:
        return False
  return True


def offroad(corners: np.ndarray, z: float, rg) -> bool:
  """Waymax's off-road test of one box: any corner right of its nearest road edge."""
  types, valid = np.asarray(rg.types), np.asarray(rg.valid)
  edge = valid & ((types == 15) | (types == 16))
  pts = np.stack([np.asarray(rg.x), np.asarray(rg.y), np.asarray(rg.z)], -1)[edge]
  dirs = np.stack([np.asarray(rg.dir_x), np.asarray(rg.dir_y)], -1)[edge]
  ids = np.asarray(rg.ids)[edge]
  for corner in corners:
    q = np.array([corner[0], corner[1], z])
    d = pts - q
    d[:, 2] *= 2.0  # separates over- and underpasses, as Waymax does
    k = int(np.argmin(np.linalg.norm(d, axis=1)))
    rel = corner - pts[k, :2]
    cross = rel[0] * dirs[k, 1] - rel[1] * dirs[k, 0]
    if k > 0 and ids[k - 1] == ids[k]:  # corner at a polyline joint
      rel_prev = corner - pts[k - 1, :2]
      prev = rel_prev[0] * dirs[k - 1, 1] - rel_prev[1] * dirs[k - 1, 0]
      cross = min(cross, prev)
    if cross > 0:
      return True
  return False


def sdc_log_checks(state) -> tuple[float, int]:
  """(fraction of the SDC's valid steps off-road, steps where it overlaps another box)."""
  traj, meta = state.log_trajectory, state.object_metadata
  g = lambda f: np.asarray(getattr(traj, f))  # noqa: E731
  x, y, z, yaw, length, width, valid = (g(f) for f in
                                        ('x', 'y', 'z', 'yaw', 'length', 'width', 'valid'))
  sdc = int(np.argmax(np.asarray(meta.is_sdc)))
  steps = np.flatnonzero(valid[sdc])
  off, overlaps = 0, 0
  for t in steps:
    box = box_corners(x[sdc, t], y[sdc, t], length[sdc, t], width[sdc, t], yaw[sdc, t])
    off += offroad(box, z[sdc, t], state.roadgraph_points)
    others = [i for i in np.flatnonzero(valid[:, t]) if i != sdc]
    overlaps += any(boxes_overlap(box, box_corners(x[i, t], y[i, t], length[i, t],
                                                   width[i, t], yaw[i, t]))
                    for i in others)
  return off / len(steps), overlaps


# --- Real sample. ----------------------------------------------------------------

@pytest.fixture(scope='module')
def real_features():
  if not EXAMPLE_FILE.exists():
    pytest.skip(f'real WOMD sample {EXAMPLE_FILE} not present')
  (index, data), = list(records.read_records(str(EXAMPLE_FILE)))
  assert index == 0
  return tf_example.parse_example(data)


@needs_sample
def test_real_file_features_match_spec():
  data = next(records.read_records(str(EXAMPLE_FILE)))[1]
  example = tf_example.tf.train.Example.FromString(data)
  found = {k: (f.WhichOneof('kind'), len(getattr(f, f.WhichOneof('kind')).value))
           for k, f in example.features.feature.items()}
  kinds = {'float': 'float_list', 'int64': 'int64_list'}
  for name, spec in tf_example.feature_spec(20000).items():
    assert found[name] == (kinds[spec.kind], spec.size), name


@needs_sample
def test_real_example_contents(real_features):
  state = tf_example.example_to_state(real_features)
  assert real_features['scenario/id'] == 'a3bb37c25ce56418'
  traj, meta = state.log_trajectory, state.object_metadata
  assert traj.shape == (128, 91)
  assert int(meta.is_valid.sum()) == 128
  assert int(traj.valid.any(-1).sum()) == 128
  assert int(traj.valid[:, 10].sum()) == 73
  assert np.flatnonzero(meta.is_sdc).tolist() == [8]
  assert np.flatnonzero(meta.is_modeled).tolist() == list(range(8))
  assert int(meta.objects_of_interest.sum()) == 2
  assert set(np.unique(meta.object_types).tolist()) == {1, 2, 3}
  # Waymax conventions: invalid entries -1, yaw = bbox_yaw, vel = velocity_x/y.
  assert np.all(traj.x[~traj.valid] == -1) and np.all(traj.timestamp_micros[~traj.valid] == -1)
  np.testing.assert_array_equal(traj.yaw[:, 11:], real_features['state/future/bbox_yaw'])
  np.testing.assert_array_equal(traj.vel_x[:, :10], real_features['state/past/velocity_x'])
  sdc_stamps = traj.timestamp_micros[8]
  assert np.all(np.abs(np.diff(sdc_stamps) - 100_000) < 1000)
  # Map: lanes, road lines and road edges, all 20000 samples valid.
  rg = state.roadgraph_points
  counts = collections.Counter(rg.types[rg.valid].tolist())
  assert counts == {2: 6323, 3: 615, 6: 2462, 7: 2412, 11: 1260, 12: 167, 15: 4844, 16: 1917}
  # Traffic lights transposed to (16, 91): 11 signals at the current step.
  tl = state.log_traffic_light
  assert tl.shape == (16, 91)
  assert int(tl.valid[:, 10].sum()) == 11
  np.testing.assert_array_equal(tl.state[:, 10],
                                real_features['traffic_light_state/current/state'][0])
  np.testing.assert_array_equal(tl.lane_ids[:, :10].T,
                                real_features['traffic_light_state/past/id'])
  assert int(state.timestep) == 0
  np.testing.assert_array_equal(state.sim_trajectory.x, traj.x)


@needs_sample
def test_real_example_sdc_on_road_and_clear(real_features):
  state = tf_example.example_to_state(real_features)
  off_fraction, overlap_steps = sdc_log_checks(state)
  assert off_fraction <= 0.1
  assert overlap_steps == 0


@needs_sample
def test_real_example_small_object_budget_keeps_sdc(real_features):
  # The SDC is row 8 and rows 0-7 are modeled: slicing the first 4 rows would drop it.
  state = tf_example.example_to_state(real_features, max_num_objects=4)
  meta = state.object_metadata
  assert int(meta.is_sdc.sum()) == 1
  assert meta.ids.tolist() == [7, 9, 14, 336]
  assert meta.is_sdc.tolist() == [False, False, False, True]
  # Enlarged budget pads with invalid rows.
  big = tf_example.example_to_state(real_features, max_num_objects=160)
  assert big.log_trajectory.shape == (160, 91)
  assert not big.object_metadata.is_valid[128:].any()
  assert np.all(big.object_metadata.ids[128:] == -1)


@needs_sample
def test_real_example_roadgraph_cap(real_features):
  full = tf_example.example_to_state(real_features)
  capped = tf_example.example_to_state(real_features, max_num_rg_points=8000)
  rg, cap = full.roadgraph_points, capped.roadgraph_points
  assert cap.shape == (8000,) and bool(cap.valid.all())
  edges = (rg.types == 15) | (rg.types == 16)
  assert int(((cap.types == 15) | (cap.types == 16)).sum()) == int(edges.sum())
  # Within every kept polyline, the points keep their order (a subsequence of the map).
  for pid in np.unique(cap.ids):
    full_xy = np.stack([rg.x, rg.y], -1)[rg.ids == pid]
    cap_xy = np.stack([cap.x, cap.y], -1)[cap.ids == pid]
    assert is_subsequence(cap_xy, full_xy), pid
  # The non-edge points kept are the nearest ones to the SDC.
  ref = assemble.sdc_reference_xy(tf_example.example_to_raw(real_features))
  dist = lambda r, m: np.hypot(r.x[m] - ref[0], r.y[m] - ref[1])  # noqa: E731
  cap_other = ~((cap.types == 15) | (cap.types == 16))
  assert dist(cap, cap_other).max() <= np.sort(dist(rg, ~edges))[cap_other.sum() - 1] + 1e-3


def is_subsequence(part: np.ndarray, whole: np.ndarray) -> bool:
  """Rows of ``part`` appear in ``whole`` in the same order (greedy match)."""
  k = 0
  for row in whole:
    if k < len(part) and np.array_equal(row, part[k]):
      k += 1
  return k == len(part)


# --- Synthetic round trip and writer. ---------------------------------------------

@pytest.mark.parametrize('num_objects,num_rg_points', [(8, 2048), (128, 20000), (3, 25000)])
def test_round_trip_exact(tmp_path, num_objects, num_rg_points):
  state = synthetic.synthetic_state(num_real=min(5, num_objects), num_objects=num_objects,
                                    sdc_row=min(2, num_objects - 1),
                                    num_rg_points=num_rg_points, seed=num_objects)
  example = tf_example.state_to_example(state, scenario_id='synthetic-1')
  path = tmp_path / 'synthetic.tfrecord'
  records.write_records(str(path), [example.SerializeToString()])
  (_, data), = list(records.read_records(str(path)))
  features = tf_example.parse_example(data)
  assert features['scenario/id'] == 'synthetic-1'
  assert features['roadgraph_samples/xyz'].shape == (
      20000 if num_rg_points <= 20000 else 30000, 3)
  back = tf_example.example_to_state(features, max_num_objects=num_objects,
                                     max_num_rg_points=num_rg_points)
  assert_states_equal(state, back)


def test_round_trip_with_routes():
  rng = np.random.default_rng(0)
  shape = (3, 10)
  paths = Paths(x=rng.normal(size=shape).astype(np.float32),
                y=rng.normal(size=shape).astype(np.float32),
                z=np.zeros(shape, np.float32), ids=rng.integers(0, 50, shape).astype(np.int32),
                valid=rng.random(shape) < 0.8,
                arc_length=np.cumsum(np.full(shape, 0.5, np.float32), axis=1),
                on_route=np.array([[True], [False], [False]]))
  state = synthetic.synthetic_state().replace(sdc_paths=paths)
  data = tf_example.state_to_example(state).SerializeToString()
  features = tf_example.parse_example(data)
  assert features['path_samples/xyz'].shape == (3, 10, 3)
  assert_states_equal(state, tf_example.example_to_state(features, 8, 2048))


@needs_sample
def test_tf_feature_description_parses_the_real_file():
  data = next(records.read_records(str(EXAMPLE_FILE)))[1]
  tf = tf_example.tf
  parsed = tf.io.parse_single_example(data, tf_example.tf_feature_description(20000))
  assert tuple(parsed['traffic_light_state/past/state'].shape) == (10, 16)
  np.testing.assert_array_equal(parsed['state/past/x'].numpy(),
                                tf_example.parse_example(data)['state/past/x'])


def test_writer_features_have_spec_shapes():
  example = tf_example.state_to_example(synthetic.synthetic_state())
  feats = example.features.feature
  for name, spec in tf_example.feature_spec(20000).items():
    kind = feats[name].WhichOneof('kind')
    assert len(getattr(feats[name], kind).value) == spec.size, name
  ttp = np.array(feats['state/tracks_to_predict'].int64_list.value)
  assert ttp[:5].tolist() == [0, 1, 0, 0, 0] and np.all(ttp[5:] == -1)


def test_writer_rejects_unrepresentable_states():
  state = synthetic.synthetic_state()
  batched = jax.tree_util.tree_map(lambda x: np.stack([x, x]), state)
  with pytest.raises(ValueError, match='unbatched'):
    tf_example.state_to_example(batched)
  meta = state.object_metadata
  bad = state.replace(object_metadata=meta.replace(
      is_modeled=np.asarray(meta.is_modeled).copy() | ~np.asarray(meta.is_valid)))
  with pytest.raises(ValueError, match='is_modeled'):
    tf_example.state_to_example(bad)


def test_sdc_kept_when_its_row_is_last(tmp_path):
  state = synthetic.synthetic_state(num_real=128, num_objects=128, sdc_row=127,
                                    num_rg_points=20000)
  data = tf_example.state_to_example(state).SerializeToString()
  small = tf_example.example_to_state(data, max_num_objects=4)
  assert small.object_metadata.ids.tolist()[-1] == 227
  assert small.object_metadata.is_sdc.tolist() == [False, False, False, True]
  assert bool(small.object_metadata.is_modeled.any())


@hypothesis.given(n=st.integers(2, 40), k=st.integers(1, 12), data=st.data())
def test_object_selection_properties(n, k, data):
  rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
  sdc = data.draw(st.integers(0, n - 1))
  valid = rng.random((n, 5)) < 0.7
  meta = {'ids': np.arange(n), 'object_types': np.ones(n, np.int32),
          'is_sdc': np.arange(n) == sdc, 'is_modeled': rng.random(n) < 0.2,
          'is_valid': np.ones(n, bool), 'objects_of_interest': np.zeros(n, bool)}
  traj = {'x': rng.normal(0, 50, (n, 5)).astype(np.float32),
          'y': rng.normal(0, 50, (n, 5)).astype(np.float32), 'valid': valid}
  raw = assemble.RawScenario(trajectory=traj, metadata=meta, roadgraph={},
                             traffic_lights={})
  kept = assemble.select_object_indices(raw, k)
  assert len(kept) == min(n, k)
  assert np.all(np.diff(kept) > 0)  # record order
  assert sdc in kept
  modeled = np.flatnonzero(meta['is_modeled'] & (np.arange(n) != sdc))
  if len(modeled) + 1 <= k:
    assert set(modeled) <= set(kept)


def test_parse_errors_name_the_feature():
  example = tf_example.state_to_example(synthetic.synthetic_state())
  del example.features.feature['state/current/x']
  with pytest.raises(RecordError) as info:
    tf_example.parse_example(example.SerializeToString())
  assert info.value.field == 'state/current/x'
  assert 'missing' in str(info.value)
  with pytest.raises(RecordError) as info:
    tf_example.parse_example(b'\xff\xff\xff garbage')
  assert info.value.field == 'record'
