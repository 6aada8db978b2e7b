"""User errors in the binaries: one clear line on stderr, exit status 2, nothing touched."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spacer_jax.training import runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = Path(ROOT).parent / 'shared' / 'data' / 'womd_samples'
# Binaries with a --workdir, each with its seconds-sized config.
WORKDIR_BINARIES = [
    ('experiments.train_spacer', 'experiments/configs/spacer.py:tiny'),
    ('experiments.train_reference', 'experiments/configs/reference.py:tiny'),
    ('experiments.evaluate', 'experiments/configs/evaluate.py:tiny'),
    ('experiments.sim_demo', 'experiments/configs/sim_demo.py:tiny'),
]


def _run(*args, cwd=ROOT):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-m', *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('binary,config', WORKDIR_BINARIES)
def test_workdir_that_is_a_file_is_one_line_and_exit_2(tmp_path, binary, config):
  blocker = tmp_path / 'a_file'
  blocker.write_text('keep me')
  out = _run(binary, f'--config={config}', f'--workdir={blocker}')
  assert out.returncode == 2, out.stderr[-2000:]
  errors = [line for line in out.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1, out.stderr[-2000:]
  assert f'workdir {blocker} is a file; expected a directory' in errors[0]
  assert 'Traceback' not in out.stderr
  assert blocker.read_text() == 'keep me'
  # --verbose shows the traceback.
  out = _run(binary, f'--config={config}', f'--workdir={blocker}', '--verbose')
  assert out.returncode != 0 and 'Traceback' in out.stderr


def _one_error_line(out, *expected):
  """The run's single ``error:`` line, after checking exit status 2 and no traceback."""
  assert out.returncode == 2, out.stderr[-2000:]
  errors = [line for line in out.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1, out.stderr[-2000:]
  assert 'Traceback' not in out.stderr, out.stderr[-2000:]
  for text in expected:
    assert text in errors[0], errors[0]
  return errors[0]


# --------------------------------------------------------------------------- workdirs
@pytest.mark.parametrize('binary,config', WORKDIR_BINARIES)
def test_workdir_under_a_file_is_one_line_and_nothing_is_written(tmp_path, binary, config):
  blocker = tmp_path / 'a_file'
  blocker.write_text('keep me')
  out = _run(binary, f'--config={config}', f'--workdir={blocker}/run')
  _one_error_line(out, f'cannot create workdir {blocker}/run: {blocker} is a file')
  assert blocker.read_text() == 'keep me' and sorted(os.listdir(tmp_path)) == ['a_file']


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only directories, so '
                    'the permission check cannot fail; test_check_workdir_refuses_what_'
                    'cannot_be_written covers the message as root')
@pytest.mark.parametrize('binary,config', WORKDIR_BINARIES)
def test_workdir_in_a_read_only_directory_is_one_line(tmp_path, binary, config):
  locked = tmp_path / 'locked'
  locked.mkdir()
  locked.chmod(0o500)
  try:
    out = _run(binary, f'--config={config}', f'--workdir={locked}/run')
    _one_error_line(out, f'cannot write to workdir {locked}/run: permission denied')
    assert not os.listdir(locked)
  finally:
    locked.chmod(0o700)


def test_check_workdir_refuses_what_cannot_be_written(tmp_path, monkeypatch):
  blocker = tmp_path / 'a_file'
  blocker.write_text('x')
  with pytest.raises(ValueError, match=f'^workdir {blocker} is a file; expected a dir'):
    runs.check_workdir(str(blocker))
  with pytest.raises(ValueError, match=f'^cannot create --out {blocker}/a/b: {blocker} is'):
    runs.check_workdir(str(blocker / 'a' / 'b'), '--out')
  # As root nothing is read-only: the refusal of the access check, simulated.
  monkeypatch.setattr(os, 'access', lambda path, mode: False)
  with pytest.raises(ValueError, match=f'^cannot write to workdir {tmp_path}/new/run: '
                     'permission denied$'):
    runs.check_workdir(str(tmp_path / 'new' / 'run'))
  assert sorted(os.listdir(tmp_path)) == ['a_file']  # nothing created on a refusal
  monkeypatch.undo()
  runs.check_workdir(str(tmp_path / 'new' / 'run'))
  assert (tmp_path / 'new' / 'run').is_dir()


# --------------------------------------------------------------------------- formats
@pytest.fixture(scope='module')
def womd_files(tmp_path_factory):
  """One synthetic record in each format: {'tf_example': path, 'scenario': path}."""
  from spacer_jax.data.womd import records, scenario_proto, synthetic, tf_example
  folder = tmp_path_factory.mktemp('womd')
  state = synthetic.synthetic_state(seed=0)
  files = {'tf_example': str(folder / 'example.tfrecord'),
           'scenario': str(folder / 'scenario.tfrecord')}
  records.write_records(files['tf_example'],
                        [tf_example.state_to_example(state).SerializeToString()])
  records.write_records(files['scenario'], [scenario_proto.state_to_scenario_bytes(state)])
  return files


_OTHER = {'tf_example': 'scenario', 'scenario': 'tf_example'}
_NAMES = {'tf_example': 'tf.Example', 'scenario': 'Scenario proto'}


def _assert_format_hint(message, path, actual):
  assert message == (f'file {path}, record 0: is a {_NAMES[actual]}, not a '
                     f'{_NAMES[_OTHER[actual]]}; try --config.data.format={actual}')


@pytest.mark.parametrize('actual', ['tf_example', 'scenario'])
def test_a_file_of_the_other_format_is_named_with_a_hint(womd_files, actual):
  from spacer_jax.data import womd
  path, wrong = womd_files[actual], _OTHER[actual]
  with pytest.raises(womd.RecordError) as e:
    womd.read_scenarios(path, 0, 1, wrong, 8, 2048)
  _assert_format_hint(str(e.value), path, actual)
  with pytest.raises(womd.RecordError) as e:
    next(womd.make_dataset(path, format=wrong, batch_size=None, num_hosts=1, host_index=0,
                           max_num_objects=8, max_num_rg_points=2048))
  _assert_format_hint(str(e.value), path, actual)
  # The right format reads; a broken record of the right format gets no such hint.
  assert womd.read_scenarios(path, 0, 1, actual, 8, 2048)
  with pytest.raises(womd.RecordError) as e:
    womd.decode_record(b'\x00garbage', actual)
  assert 'try --config' not in str(e.value)


@pytest.mark.parametrize('actual,name', [('tf_example', 'motion_data_one_example.tfrecord'),
                                         ('scenario', 'motion_data_one_scenario.tfrecord')])
def test_a_real_womd_file_of_the_other_format_gets_the_hint(actual, name):
  path = SAMPLES / name
  if not path.exists():
    pytest.skip(f'real WOMD sample {path} not present (shared data folder absent)')
  from spacer_jax.data import womd
  with pytest.raises(womd.RecordError) as e:
    womd.read_scenarios(str(path), 0, 1, _OTHER[actual], 32)
  _assert_format_hint(str(e.value), str(path), actual)


def test_evaluate_on_a_tf_example_file_read_as_scenarios_is_one_line(tmp_path, womd_files):
  path = womd_files['tf_example']
  out = _run('experiments.evaluate', '--config=experiments/configs/evaluate.py:tiny',
             f'--workdir={tmp_path / "eval"}', f'--config.data.files={path}',
             '--config.data.format=scenario', '--config.data.num_scenarios=1')
  _one_error_line(out, f'file {path}, record 0: is a tf.Example',
                  'try --config.data.format=tf_example')


def test_data_stats_hint_names_its_own_flag(womd_files):
  path = womd_files['scenario']
  out = _run('experiments.data_stats', f'--data={path}', '--format=tf_example')
  _one_error_line(out, f'file {path}, record 0: is a Scenario proto', 'try --format=scenario')


# --------------------------------------------------------------------------- configs
@pytest.mark.parametrize('binary,args,expected', [
    ('experiments.sim_demo', ['--config=experiments/configs/sim_demo.py:tiny',
                              '--config.sim_agnt=idm'],
     'unknown config field sim_agnt; did you mean sim_agent?'),
    ('experiments.sim_demo', ['--config=experiments/configs/sim_demo.py:tiny',
                              '--config.view_radius=-5'],
     'view_radius must be > 0, got -5.0'),
    ('experiments.sim_demo', ['--config=experiments/configs/sim_demo.py:tiny',
                              '--config.sim_agent=pid'],
     "sim_agent must be one of ('log_replay', 'constant_velocity', 'idm'), got 'pid'"),
    ('experiments.build_vocabulary', ['--config=experiments/configs/tokens.py:tiny',
                                      '--config.num_token=8'],
     'unknown config field num_token; did you mean num_tokens?'),
    ('experiments.build_vocabulary', ['--config=experiments/configs/tokens.py:tiny',
                                      '--config.coverage=2'],
     'coverage must be in (0, 1], got 2.0'),
])
def test_config_overrides_are_checked_in_every_binary(tmp_path, binary, args, expected):
  output = (f'--out={tmp_path / "vocab.npz"}' if binary == 'experiments.build_vocabulary'
            else f'--workdir={tmp_path / "demo"}')
  out = _run(binary, *args, output)
  # Refused by the config's RULES up front, not later by the library's own check.
  assert _one_error_line(out).startswith(f'error: {expected}')
  assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------- flags
@pytest.mark.parametrize('args,expected', [
    (['--num_scenarios=2', '--format=scenario'], "Unknown command line flag 'format'"),
    (['--num_scenarios=-3'], 'num_scenarios, shard_size and num_workers must be >= 1, got -3'),
    (['--num_scenarios=2', '--split=dev'], 'value should be one of <train|validation|test>'),
])
def test_make_dataset_bad_flags_are_one_line(tmp_path, args, expected):
  out = _run('experiments.make_dataset', f'--out={tmp_path / "data"}', *args)
  _one_error_line(out, expected)
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize('out_dir,expected', [
    ('a_file', '--out {blocker} is a file; expected a directory'),
    ('a_file/data', 'cannot create --out {blocker}/data: {blocker} is a file'),
])
def test_make_dataset_output_that_is_a_file_is_one_line(tmp_path, out_dir, expected):
  blocker = tmp_path / 'a_file'
  blocker.write_text('keep me')
  out = _run('experiments.make_dataset', f'--out={tmp_path / out_dir}', '--num_scenarios=2',
             '--num_objects=16', '--num_roadgraph_points=2000', '--noprogress')
  _one_error_line(out, expected.format(blocker=blocker))
  assert blocker.read_text() == 'keep me' and os.listdir(tmp_path) == ['a_file']


@pytest.mark.parametrize('args,expected', [
    ([], 'give exactly one of --data and --generate'),
    (['--generate=2', '--batch_size=0'], '--batch_size must be >= 1, got 0'),
])
def test_data_stats_bad_flags_are_one_line(args, expected):
  _one_error_line(_run('experiments.data_stats', *args), expected)
