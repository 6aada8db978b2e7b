"""WOSAC submission export (``experiments.export_wosac``) on the real WOMD samples.

Log replay with 2 rollouts on the Scenario-format sample, decoded back with our codec and
with an independent protobuf schema: the scenario id, the rollouts, exactly the sim set
(tracks valid at the current step) with 80 steps each, the logged future reproduced,
and a high realism score. Also the test split (11 logged steps) and the user errors.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import SHARED_DIR
from test_eval_submission import _official_like_schema

from spacer_jax.apps import export_wosac as export
from spacer_jax.data.womd import read_records, scenario_proto, write_records
from spacer_jax.eval import compute_realism
from spacer_jax.eval import submission as sub

SAMPLES = Path(SHARED_DIR) / 'data' / 'womd_samples'
SCENARIO_FILE = SAMPLES / 'motion_data_one_scenario.tfrecord'
ROOT = Path(__file__).resolve().parents[1]
FAST = {'xla_backend_optimization_level': 0}
R = 2


def _record() -> bytes:
  if not SCENARIO_FILE.exists():
    pytest.skip(f'real WOMD sample {SCENARIO_FILE} not present (shared data folder absent)')
  (_, data), = list(read_records(str(SCENARIO_FILE)))
  return data


def _export(data: str, out: Path, lines: list[str]) -> export.ExportResult:
  config = export.ExportConfig(policy='log_replay', data=data, out=str(out),
                               num_rollouts=R)
  return export.export_wosac(config, log=lines.append, jit_options=FAST)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """(scenario proto, submission bytes, export result, progress lines) of log replay."""
  record = _record()
  out = tmp_path_factory.mktemp('export') / 'sub' / 'log_replay.binproto'
  lines = []
  result = _export(str(SCENARIO_FILE), out, lines)
  return scenario_proto.parse_scenario(record), out.read_bytes(), result, lines


def test_log_replay_submission_holds_the_sim_set_for_80_steps(exported):
  scenario, data, result, lines = exported
  assert result.scenario_ids == ('637f20cafde22ff8',) and result.num_bytes == len(data)
  assert not [p for p in os.listdir(os.path.dirname(result.path)) if '.tmp-' in p]
  assert any(line.startswith('[1/1] 637f20cafde22ff8: 50 sim agents x 2 rollouts')
             for line in lines), lines
  # WOSAC's sim set: every track valid at the current step, no other.
  now = scenario.current_time_index
  sim_ids = sorted(t.id for t in scenario.tracks if t.states[now].valid)
  assert len(sim_ids) == 50
  # Parsed by protobuf's runtime with the public field numbers, independent of our codec.
  message = _official_like_schema().FromString(data)
  assert message.submission_type == 1 and message.unique_method_name == 'log_replay'
  (rollouts,) = message.scenario_rollouts
  assert rollouts.scenario_id == scenario.scenario_id
  assert len(rollouts.joint_scenes) == R
  for scene in rollouts.joint_scenes:
    assert sorted(t.object_id for t in scene.simulated_trajectories) == sim_ids
    for traj in scene.simulated_trajectories:
      assert (len(traj.center_x), len(traj.center_y), len(traj.center_z),
              len(traj.heading)) == (80, 80, 80, 80)
  # Our decoder: the same, as arrays.
  (back,), meta = sub.decode_submission(data)
  assert meta.num_model_parameters == '0'
  assert back.center_x.shape == (R, 50, 80) and sorted(back.object_ids.tolist()) == sim_ids
  assert np.isfinite(np.stack([back.center_x, back.center_y, back.center_z,
                               back.heading])).all()


def test_log_replay_reproduces_the_logged_future(exported):
  scenario, data, _, _ = exported
  (back,), _ = sub.decode_submission(data)
  tracks = {t.id: t for t in scenario.tracks}
  now = scenario.current_time_index
  checked = 0
  for a, object_id in enumerate(back.object_ids):
    states = tracks[int(object_id)].states
    for k in range(80):
      s = states[now + 1 + k]
      if not s.valid:
        continue  # extrapolated (the sim set stays simulated after its log ends)
      for name, got in (('center_x', back.center_x), ('center_y', back.center_y),
                        ('heading', back.heading)):
        np.testing.assert_array_equal(got[:, a, k], np.float32(getattr(s, name)),
                                      err_msg=f'{object_id} step {k} {name}')
      checked += 1
  assert checked > 50 * 40  # most of the sim set is logged for most of the future


def test_decoded_submission_scores_high_for_log_replay(exported):
  _, data, _, _ = exported
  (back,), _ = sub.decode_submission(data)
  state, scenario_id = export.decode_scenario(_record(), 'scenario')
  assert scenario_id == back.scenario_id
  result = compute_realism(state, sub.submission_to_rollouts(back, state))
  result = jax.tree.map(np.asarray, result)
  assert float(result.meta_metric) > 0.7
  assert int(result.num_evaluated) == 4  # the SDC and the 3 tracks to predict


def test_test_split_scenarios_without_a_future_are_extrapolated(tmp_path):
  """WOSAC's test split logs 11 steps: every sim agent still gets 80 future steps."""
  scenario = scenario_proto.parse_scenario(_record())
  now = scenario.current_time_index
  for track in scenario.tracks:
    del track.states[now + 1:]
  del scenario.timestamps_seconds[now + 1:]
  del scenario.dynamic_map_states[now + 1:]
  path = tmp_path / 'testing.tfrecord'
  write_records(str(path), [scenario.SerializeToString()])
  _export(str(path), tmp_path / 'test.binproto', [])
  (back,), _ = sub.read_submission(str(tmp_path / 'test.binproto'))
  assert back.center_x.shape == (R, 50, 80)
  # Log replay without a log: constant velocity from the current state.
  current = {t.id: t.states[now] for t in scenario.tracks}
  vx = np.array([current[int(i)].velocity_x for i in back.object_ids], np.float32)
  x0 = np.array([current[int(i)].center_x for i in back.object_ids], np.float32)
  np.testing.assert_allclose(back.center_x[:, :, 79],
                             np.broadcast_to(x0 + 8.0 * vx, (R, 50)), atol=0.1)


def test_a_glob_matching_nothing_is_a_clear_error(tmp_path):
  out = tmp_path / 'never.binproto'
  pattern = str(tmp_path / 'missing-*.tfrecord')
  with pytest.raises(FileNotFoundError) as info:
    _export(pattern, out, [])
  assert str(info.value) == f'--data {pattern!r} matches no file.'
  with pytest.raises(ValueError, match=r"--format must be one of \['scenario', "
                                       r"'tf_example'\], got 'tfexample'"):
    export.ExportConfig(policy='idm', data=pattern, out=str(out), format='tfexample')
  assert not out.exists()
  # The binary: one error line naming the glob, exit status 2, nothing written.
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.export_wosac', '--policy', 'log_replay',
       '--data', pattern, '--out', str(out)], cwd=ROOT, capture_output=True, text=True,
      env=dict(os.environ, JAX_PLATFORMS='cpu'), timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and pattern in errors[0] and '--data' in errors[0], proc.stderr
  assert 'Traceback' not in proc.stderr and not out.exists()


def test_reference_default_is_the_packaged_reference_not_a_path(monkeypatch):
  """``reference:default`` names the packaged default reference (trained when stale),
  even though no file ``default`` exists."""
  from spacer_jax.models import default

  class Resolved(Exception):
    pass

  def resolve(num_tokens=200, variant='cpu'):
    raise Resolved(num_tokens)

  monkeypatch.setattr(default, 'get_or_train_default_reference', resolve)
  with pytest.raises(Resolved):
    export.load_export_policy('reference:default', export.export_env())


def test_a_failed_export_leaves_the_previous_file_alone(tmp_path):
  _record()  # skips without the samples
  out = tmp_path / 'sub.binproto'
  out.write_bytes(b'an earlier export')
  config = export.ExportConfig(policy='log_replay', data=str(SCENARIO_FILE), out=str(out),
                               format='tf_example', num_rollouts=R)
  with pytest.raises(ValueError, match='is a Scenario proto, not a tf.Example') as info:
    export.export_wosac(config, log=lambda line: None)
  assert str(SCENARIO_FILE) in str(info.value) and 'record 0' in str(info.value)
  assert out.read_bytes() == b'an earlier export'
  assert os.listdir(tmp_path) == ['sub.binproto']  # no temporary file left
