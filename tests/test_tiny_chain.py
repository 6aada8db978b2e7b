"""The first hour: the three tiny binaries chain on an empty cache, with no extra flags.

A new user runs ``train_reference :tiny``, ``train_spacer :tiny`` and ``evaluate :tiny``
in a row and passes only workdirs between them. Nothing may be cached beforehand: the
default vocabulary and the tiny default reference are built on the way, in seconds.
Wall times are printed (``-s``), not asserted: CI machines are shared.
"""

import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args: list[str], env: dict[str, str]) -> float:
  start = time.perf_counter()
  done = subprocess.run([sys.executable, '-m', *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, f'{args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}'
  seconds = time.perf_counter() - start
  print(f'{args[0]}: {seconds:.0f} s')
  return seconds


def test_tiny_binaries_chain_on_an_empty_cache(tmp_path):
  cache = tmp_path / 'cache'
  env = {**os.environ, 'SPACER_JAX_CACHE': str(cache), 'JAX_PLATFORMS': 'cpu'}
  ref, spacer, report = tmp_path / 'ref', tmp_path / 'spacer', tmp_path / 'eval'
  _run(['experiments.train_reference', '--config=experiments/configs/reference.py:tiny',
        f'--workdir={ref}'], env)
  # The default tiny reference is trained into the empty cache on the way.
  _run(['experiments.train_spacer', '--config=experiments/configs/spacer.py:tiny',
        f'--workdir={spacer}'], env)
  assert any(name.startswith('default-tiny') for name in os.listdir(cache / 'reference'))
  # The reference trained in step 1 and the policy of step 2 share one vocabulary size.
  _run(['experiments.evaluate', '--config=experiments/configs/evaluate.py:tiny',
        f'--workdir={report}', f'--checkpoints=spacer:{spacer},reference:{ref}'], env)
  results = json.loads((report / 'report.json').read_text())
  evaluated = set(results['realism'])
  assert {'log_replay', 'constant_velocity'} <= evaluated
  assert any(k.startswith('spacer') for k in evaluated), evaluated
  assert any(k.startswith('reference') for k in evaluated), evaluated
