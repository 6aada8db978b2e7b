"""WOMD Scenario proto reader/writer: real sample, own schema, agreement with tf.Example."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
from test_womd_tf_example import assert_states_equal, sdc_log_checks

from spacer_jax.data.womd import records, scenario_proto, scenario_schema, synthetic, tf_example
from spacer_jax.data.womd.errors import RecordError

SAMPLES = Path(__file__).parents[1] / '..' / 'shared' / 'data' / 'womd_samples'
SCENARIO_FILE = SAMPLES / 'motion_data_one_scenario.tfrecord'
EXAMPLE_FILE = SAMPLES / 'motion_data_one_example.tfrecord'


@pytest.fixture(scope='module')
def real_bytes() -> bytes:
  if not SCENARIO_FILE.exists():
    pytest.skip(f'real WOMD sample {SCENARIO_FILE} not present (shared data folder absent)')
  (_, data), = list(records.read_records(str(SCENARIO_FILE)))
  return data


def test_real_scenario_contents(real_bytes):
  scenario = scenario_proto.parse_scenario(real_bytes)
  assert scenario.scenario_id == '637f20cafde22ff8'
  assert len(scenario.timestamps_seconds) == 91 and scenario.current_time_index == 10
  kinds = collections.Counter(f.WhichOneof('feature_data') for f in scenario.map_features)
  assert kinds == {'lane': 199, 'road_line': 59, 'road_edge': 28, 'stop_sign': 8,
                   'crosswalk': 4, 'speed_bump': 3}
  state = scenario_proto.scenario_to_state(real_bytes, max_num_rg_points=30000)
  traj, meta = state.log_trajectory, state.object_metadata
  assert traj.shape == (128, 91)
  assert int(meta.is_valid.sum()) == 83
  assert np.flatnonzero(meta.is_sdc).tolist() == [82]
  assert int(meta.ids[82]) == 2406
  assert sorted(meta.ids[meta.is_modeled].tolist()) == [1675, 1676, 2320]
  assert not meta.objects_of_interest.any()
  assert np.all(traj.x[~traj.valid] == -1)
  assert np.all(np.abs(np.diff(traj.timestamp_micros[82]) - 100_000) < 1000)
  rg = state.roadgraph_points
  types = set(rg.types[rg.valid].tolist())
  assert {2, 3} <= types  # lanes
  assert {6, 7, 11} <= types  # road lines
  assert {15, 16} <= types  # road edges
  assert {17, 18, 19} <= types  # stop signs, crosswalks, speed bumps
  assert 20000 < int(rg.valid.sum()) < 30000
  # dir: unit vectors inside a feature, zero at its last point.
  norms = np.hypot(np.hypot(rg.dir_x, rg.dir_y), rg.dir_z)[rg.valid]
  assert np.all((np.abs(norms - 1) < 1e-4) | (norms == 0))
  tl = state.log_traffic_light
  assert tl.shape == (16, 91)
  assert tl.valid.sum(0).tolist() == [12] * 91
  assert set(tl.state[tl.valid].tolist()) <= set(range(9))
  # The default 20000-point budget caps the map, keeping every road edge.
  capped = scenario_proto.scenario_to_state(real_bytes).roadgraph_points
  assert bool(capped.valid.all())
  edge = lambda r: int(((r.types == 15) | (r.types == 16))[r.valid].sum())  # noqa: E731
  assert edge(capped) == edge(rg)


def test_real_scenario_sdc_on_road_and_clear(real_bytes):
  state = scenario_proto.scenario_to_state(real_bytes, max_num_rg_points=30000)
  off_fraction, overlap_steps = sdc_log_checks(state)
  assert off_fraction <= 0.1
  assert overlap_steps == 0


def test_real_scenario_small_budget_keeps_sdc(real_bytes):
  state = scenario_proto.scenario_to_state(real_bytes, max_num_objects=4,
                                           max_num_rg_points=3000)
  meta = state.object_metadata
  assert meta.ids.tolist() == [1675, 1676, 2320, 2406]  # modeled + SDC (last track)
  assert meta.is_sdc.tolist() == [False, False, False, True]


def test_both_real_samples_compared_when_same_scenario(real_bytes):
  if not EXAMPLE_FILE.exists():
    pytest.skip('tf.Example sample absent')
  ex_features = tf_example.parse_example(next(records.read_records(str(EXAMPLE_FILE)))[1])
  scenario_id = scenario_proto.parse_scenario(real_bytes).scenario_id
  if ex_features.get('scenario/id') != scenario_id:
    pytest.skip(f'the samples hold different scenarios ({ex_features.get("scenario/id")} '
                f'vs {scenario_id}); the readers are compared on a synthetic one instead')
  a = tf_example.example_to_state(ex_features)
  b = scenario_proto.scenario_to_state(real_bytes)
  by_id = {int(i): k for k, i in enumerate(b.object_metadata.ids)}
  for k, i in enumerate(a.object_metadata.ids):
    if int(i) in by_id and a.log_trajectory.valid[k].any():
      j = by_id[int(i)]
      both = a.log_trajectory.valid[k] & b.log_trajectory.valid[j]
      np.testing.assert_allclose(a.log_trajectory.x[k][both], b.log_trajectory.x[j][both],
                                 atol=1e-2)


def test_synthetic_scenario_file_round_trip(tmp_path):
  state = synthetic.synthetic_state(num_real=6, num_objects=8, sdc_row=4)
  path = tmp_path / 'scenario.tfrecord'
  records.write_records(str(path), [scenario_proto.state_to_scenario_bytes(state, 'syn')])
  (_, data), = list(records.read_records(str(path)))
  assert scenario_proto.parse_scenario(data).scenario_id == 'syn'
  back = scenario_proto.scenario_to_state(data, max_num_objects=8, max_num_rg_points=2048)
  # Everything but the signals' invalid slots (-1 here, as in WOMD; the builder uses 0)
  # comes back exactly, the map included (it is already sampled at 0.5 m).
  tl, tl_back = state.log_traffic_light, back.log_traffic_light
  np.testing.assert_array_equal(np.asarray(tl.valid), tl_back.valid)
  np.testing.assert_array_equal(np.asarray(tl.state)[tl_back.valid],
                                tl_back.state[tl_back.valid])
  assert_states_equal(state.replace(log_traffic_light=tl_back),
                      back.replace(log_traffic_light=tl_back))


def test_readers_agree_on_the_same_scenario():
  state = synthetic.synthetic_state(num_real=7, num_objects=16, sdc_row=6, seed=3)
  from_example = tf_example.example_to_state(
      tf_example.state_to_example(state).SerializeToString(), 16, 2048)
  from_scenario = scenario_proto.scenario_to_state(
      scenario_proto.state_to_scenario_bytes(state), 16, 2048)
  for name in ('x', 'y', 'z', 'yaw', 'vel_x', 'vel_y', 'valid', 'length'):
    np.testing.assert_array_equal(getattr(from_example.log_trajectory, name),
                                  getattr(from_scenario.log_trajectory, name), err_msg=name)
  rg_a, rg_b = from_example.roadgraph_points, from_scenario.roadgraph_points
  np.testing.assert_array_equal(rg_a.types, rg_b.types)
  np.testing.assert_allclose(rg_a.x, rg_b.x, atol=1e-3)
  np.testing.assert_allclose(rg_a.dir_x, rg_b.dir_x, atol=1e-3)
  for name in ('state', 'lane_ids', 'x', 'valid'):
    a, b = (getattr(s.log_traffic_light, name) for s in (from_example, from_scenario))
    valid = from_example.log_traffic_light.valid
    np.testing.assert_array_equal(a[valid], b[valid], err_msg=name)


def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    byte, n = n & 0x7F, n >> 7
    out.append(byte | (0x80 if n else 0))
    if not n:
      return bytes(out)


def test_lidar_and_camera_fields_are_skipped():
  data = scenario_proto.state_to_scenario_bytes(synthetic.synthetic_state())
  blob = bytes(range(256)) * 4
  extra = b''
  for number in (12, 13):  # compressed_frame_laser_data, frame_camera_tokens
    extra += _varint(number << 3 | 2) + _varint(len(blob)) + blob
  a = scenario_proto.scenario_to_state(data, 8, 2048)
  b = scenario_proto.scenario_to_state(data + extra, 8, 2048)
  assert_states_equal(a, b)


def test_map_type_mapping():
  f = scenario_schema.MapFeature()
  f.lane.type = 1
  assert scenario_proto.map_point_type('lane', f.lane) == 1
  f.road_line.type = 8
  assert scenario_proto.map_point_type('road_line', f.road_line) == 13
  f.road_line.type = 0
  assert scenario_proto.map_point_type('road_line', f.road_line) == 5
  for edge_type, expected in ((0, 14), (1, 15), (2, 16)):
    f.road_edge.type = edge_type
    assert scenario_proto.map_point_type('road_edge', f.road_edge) == expected
  assert scenario_proto.map_point_type('stop_sign', f.stop_sign) == 17
  assert scenario_proto.map_point_type('crosswalk', f.crosswalk) == 18
  assert scenario_proto.map_point_type('speed_bump', f.speed_bump) == 19


def _bad_scenario(mutate) -> bytes:
  scenario = scenario_proto.parse_scenario(
      scenario_proto.state_to_scenario_bytes(synthetic.synthetic_state()))
  mutate(scenario)
  return scenario.SerializeToString()


@pytest.mark.parametrize('mutate,field', [
    (lambda s: s.ClearField('sdc_track_index'), 'sdc_track_index'),
    (lambda s: s.tracks[2].states.pop(), 'tracks[2].states'),
    (lambda s: setattr(s.tracks[1].states[30], 'center_y', float('nan')),
     'tracks[1].states[30].center_y'),
    (lambda s: setattr(s.tracks_to_predict[0], 'track_index', 99),
     'tracks_to_predict[0].track_index'),
])
def test_bad_scenarios_name_the_field(mutate, field):
  with pytest.raises(RecordError) as info:
    scenario_proto.scenario_to_state(_bad_scenario(mutate), 8, 2048)
  assert info.value.field == field


def test_nan_in_an_invalid_state_is_ignored():
  def mutate(s):
    s.tracks[4].states[85].valid = False  # last real row is invalid there already
    s.tracks[4].states[85].center_x = float('nan')
  state = scenario_proto.scenario_to_state(_bad_scenario(mutate), 8, 2048)
  assert float(state.log_trajectory.x[4, 85]) == -1.0
