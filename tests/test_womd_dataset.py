"""WOMD dataset pipeline: batching, host sharding, shuffling, bad-record reports."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from spacer_jax.data.womd import (
    RecordError,
    dataset,
    make_dataset,
    records,
    scenario_proto,
    synthetic,
    tf_example,
)
from spacer_jax.data.womd._tf import tf

SAMPLES = Path(__file__).parents[1] / '..' / 'shared' / 'data' / 'womd_samples'
SIZES = dict(max_num_objects=8, max_num_rg_points=2048)


@pytest.fixture(scope='module')
def examples():
  """Six tf.Example protos of distinct synthetic scenarios."""
  return [tf_example.state_to_example(synthetic.synthetic_state(seed=k)) for k in range(6)]


def key(state) -> float:
  """Identifies a synthetic scenario (its first object's first x)."""
  return float(np.asarray(state.log_trajectory.x)[..., 0, 0].ravel()[0])


def write(path: Path, protos) -> str:
  records.write_records(str(path), [p if isinstance(p, bytes) else p.SerializeToString()
                                    for p in protos])
  return str(path)


def test_tensorflow_sees_no_gpu():
  assert tf.config.get_visible_devices('GPU') == []


def test_batches_and_remainder(tmp_path, examples):
  write(tmp_path / 'a.tfrecord', examples[:2])
  write(tmp_path / 'b.tfrecord', examples[2:4])
  ds = make_dataset(str(tmp_path / '*.tfrecord'), batch_size=3, **SIZES)
  batches = list(ds)
  assert [b.shape for b in batches] == [(3,), (1,)]
  assert batches[0].log_trajectory.shape == (3, 8, 91)
  assert batches[0].roadgraph_points.shape == (3, 2048)
  assert ds.stats.records_read == 4 and ds.stats.records_skipped == 0
  dropped = list(make_dataset(str(tmp_path / '*.tfrecord'), batch_size=3,
                              drop_remainder=True, prefetch=0, **SIZES))
  assert len(dropped) == 1
  unbatched = list(make_dataset(str(tmp_path / 'a.tfrecord'), batch_size=None, **SIZES))
  assert [s.shape for s in unbatched] == [(), ()]


def test_host_sharding_splits_files(tmp_path, examples):
  for k in range(4):
    write(tmp_path / f'shard-{k}.tfrecord', [examples[k]])
  pattern = str(tmp_path / 'shard-*.tfrecord')
  per_host = [make_dataset(pattern, batch_size=None, num_hosts=2, host_index=h, **SIZES)
              for h in range(2)]
  assert [Path(f).name for f in per_host[0].files] == ['shard-0.tfrecord', 'shard-2.tfrecord']
  assert [Path(f).name for f in per_host[1].files] == ['shard-1.tfrecord', 'shard-3.tfrecord']
  keys = [{key(s) for s in ds} for ds in per_host]
  assert not keys[0] & keys[1] and len(keys[0] | keys[1]) == 4


def test_fewer_files_than_hosts_splits_records(tmp_path, examples):
  path = write(tmp_path / 'one.tfrecord', examples[:4])
  keys = [[key(s) for s in make_dataset(path, batch_size=None, num_hosts=3, host_index=h,
                                        **SIZES)] for h in range(3)]
  assert [len(k) for k in keys] == [2, 1, 1]
  assert len(set(sum(keys, []))) == 4


def test_shuffle_is_seeded_and_repeat_loops(tmp_path, examples):
  for k in range(3):
    write(tmp_path / f's{k}.tfrecord', examples[2 * k:2 * k + 2])
  pattern = str(tmp_path / 's*.tfrecord')
  order = lambda seed: [key(s) for s in make_dataset(  # noqa: E731
      pattern, batch_size=None, shuffle=True, seed=seed, shuffle_buffer=3, **SIZES)]
  assert order(1) == order(1)
  assert sorted(order(1)) == sorted(order(2)) and len(order(1)) == 6
  ds = make_dataset(pattern, batch_size=4, repeat=True, shuffle=True, **SIZES)
  taken = [next(ds) for _ in range(4)]  # 16 records > 6: several epochs
  assert all(b.shape == (4,) for b in taken)


def test_scenario_format(tmp_path):
  states = [synthetic.synthetic_state(seed=k) for k in range(2)]
  path = write(tmp_path / 'scen.tfrecord',
               [scenario_proto.state_to_scenario_bytes(s) for s in states])
  (batch,) = list(make_dataset(path, format='scenario', batch_size=2, **SIZES))
  np.testing.assert_array_equal(batch.log_trajectory.x[1], np.asarray(states[1].log_trajectory.x))


@pytest.mark.parametrize('fmt,name', [('tf_example', 'motion_data_one_example.tfrecord'),
                                      ('scenario', 'motion_data_one_scenario.tfrecord')])
def test_real_samples_through_the_pipeline(fmt, name):
  path = SAMPLES / name
  if not path.exists():
    pytest.skip(f'real WOMD sample {path} not present (shared data folder absent)')
  (batch,) = list(make_dataset(str(path), format=fmt, batch_size=1, max_num_objects=32))
  assert batch.log_trajectory.shape == (1, 32, 91)
  assert int(batch.object_metadata.is_sdc.sum()) == 1


# --- Bad input. -----------------------------------------------------------------------

def _without(example, name):
  bad = tf_example.tf.train.Example()
  bad.CopyFrom(example)
  del bad.features.feature[name]
  return bad


def _with_values(example, name, values):
  bad = tf_example.tf.train.Example()
  bad.CopyFrom(example)
  feature = bad.features.feature[name]
  kind = feature.WhichOneof('kind')
  getattr(feature, kind).ClearField('value')
  getattr(feature, kind).value.extend(values)
  return bad


def _with_nan(example, name, row, step):
  values = np.array(example.features.feature[name].float_list.value).reshape(128, -1)
  values[row, step] = np.nan
  return _with_values(example, name, values.ravel().tolist())


def _record_offsets(path: str) -> list[int]:
  data, offsets, pos = Path(path).read_bytes(), [], 0
  while pos < len(data):
    offsets.append(pos)
    pos += 16 + struct.unpack('<Q', data[pos:pos + 8])[0]
  return offsets


def _corrupt(path: str, index: int) -> None:
  """Flips one data byte of record ``index`` (its CRC no longer matches)."""
  data = bytearray(Path(path).read_bytes())
  data[_record_offsets(path)[index] + 12 + 40] ^= 0xFF
  Path(path).write_bytes(bytes(data))


def _truncate(path: str, num_bytes: int) -> None:
  data = Path(path).read_bytes()
  Path(path).write_bytes(data[:-num_bytes])


@pytest.fixture
def bad_files(tmp_path, examples):
  """Files mixing good records and each kind of bad one; value: expected errors."""
  e = examples
  missing = write(tmp_path / 'missing.tfrecord',
                  [e[0], _without(e[1], 'state/future/valid'), e[2]])
  shape = write(tmp_path / 'shape.tfrecord',
                [e[3], _with_values(e[1], 'state/past/x', [1.0] * 100)])
  nan = write(tmp_path / 'nan.tfrecord', [_with_nan(e[1], 'state/future/y', 0, 5), e[4]])
  crc = write(tmp_path / 'crc.tfrecord', [e[0], e[1], e[5]])
  _corrupt(crc, 1)
  truncated = write(tmp_path / 'truncated.tfrecord', [e[2], e[3], e[4]])
  _truncate(truncated, 1000)
  return {missing: (1, 'state/future/valid'), shape: (1, 'state/past/x'),
          nan: (0, 'state/future/y'), crc: (1, 'record'), truncated: (2, 'record')}


def test_each_bad_record_is_named(bad_files):
  for path, (index, field) in bad_files.items():
    with pytest.raises(RecordError) as info:
      list(make_dataset(path, batch_size=None, **SIZES))
    err = info.value
    assert (err.file, err.record_index, err.field) == (path, index, field), str(err)
    assert path in str(err) and f'record {index}' in str(err) and field in str(err)


def test_error_messages_say_what_is_wrong(bad_files):
  reasons = {}
  for path in bad_files:
    with pytest.raises(RecordError) as info:
      list(make_dataset(path, batch_size=None, prefetch=0, **SIZES))
    reasons[Path(path).stem] = info.value.reason
  assert 'missing' in reasons['missing']
  assert 'expected shape (128, 10)' in reasons['shape']
  assert 'non-finite' in reasons['nan'] and '(0, 5)' in reasons['nan']
  assert 'CRC' in reasons['crc']
  assert 'truncated' in reasons['truncated']


def test_skip_bad_records_counts_and_keeps_the_good_ones(bad_files, examples):
  pattern = ','.join(sorted(bad_files))
  ds = make_dataset(pattern, batch_size=None, skip_bad_records=True, **SIZES)
  got = sorted(key(s) for s in ds)
  expected_good = [0, 2, 3, 4, 0, 5, 2, 3]  # missing, shape, nan, crc (resynced), truncated
  want = sorted(key(tf_example.example_to_state(examples[k].SerializeToString(), 8, 2048))
                for k in expected_good)
  assert got == want
  assert ds.stats.records_read == 8 and ds.stats.records_skipped == 5
  found = {(e.file, e.record_index, e.field) for e in ds.stats.errors}
  assert found == {(p, i, f) for p, (i, f) in bad_files.items()}


def test_validation_errors_are_wrapped_with_location(tmp_path, examples):
  # Two SDCs parse fine; only the datatypes' validate() rejects them.
  flags = [0] * 128
  flags[0] = flags[1] = 1
  path = write(tmp_path / 'two_sdc.tfrecord', [_with_values(examples[0], 'state/is_sdc', flags)])
  with pytest.raises(RecordError) as info:
    list(make_dataset(path, batch_size=None, **SIZES))
  assert info.value.field == 'ObjectMetadata.is_sdc'
  assert (info.value.file, info.value.record_index) == (path, 0)


def test_no_file_matches(tmp_path):
  with pytest.raises(FileNotFoundError):
    make_dataset(str(tmp_path / 'nothing-*.tfrecord'))
  with pytest.raises(ValueError, match='format'):
    dataset.DatasetConfig(files=('x',), format='parquet')


def test_record_index_reads_any_record_and_names_bad_ones(tmp_path, examples):
  from spacer_jax.data.womd import RecordIndex
  a = write(tmp_path / 'a.tfrecord', examples[:2])
  b = write(tmp_path / 'b.tfrecord', examples[2:5])
  index = RecordIndex([a, b])
  assert len(index) == 5
  for i in (4, 0, 2):
    assert index.read(i) == examples[i].SerializeToString()
  with pytest.raises(IndexError, match='5 records'):
    index.read(5)
  _corrupt(b, 1)
  with pytest.raises(RecordError) as info:
    RecordIndex([a, b]).read(3)
  assert (info.value.file, info.value.record_index) == (b, 1) and 'CRC' in str(info.value)
  _truncate(b, 1000)
  with pytest.raises(RecordError, match='truncated'):
    RecordIndex([a, b])
