"""User errors in the binaries: one clear line on stderr, exit status 2, nothing touched."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, cwd=ROOT):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-m', *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('binary,config', [
    ('experiments.train_spacer', 'experiments/configs/spacer.py:tiny'),
    ('experiments.train_reference', 'experiments/configs/reference.py:tiny'),
])
def test_workdir_that_is_a_file_is_one_line_and_exit_2(tmp_path, binary, config):
  blocker = tmp_path / 'a_file'
  blocker.write_text('keep me')
  out = _run(binary, f'--config={config}', f'--workdir={blocker}')
  assert out.returncode == 2, out.stderr[-2000:]
  errors = [line for line in out.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and 'a_file is a file' in errors[0], out.stderr[-2000:]
  assert 'Traceback' not in out.stderr
  assert blocker.read_text() == 'keep me'
  # --verbose shows the traceback.
  out = _run(binary, f'--config={config}', f'--workdir={blocker}', '--verbose')
  assert out.returncode != 0 and 'Traceback' in out.stderr
