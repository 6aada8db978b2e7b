"""benchmarks/gpu_check.sh --smoke end to end on CPU: one JSON with every section measured."""

import json
import math
import os
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
SECTIONS = ('reference', 'realism', 'sim', 'train')


def _number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@pytest.mark.slow
def test_smoke_run_writes_every_section_with_numbers(tmp_path):
  out = tmp_path / 'gpu_check.json'
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHON=sys.executable,
             # The cache the other tests share (conftest): reruns skip most compiles.
             JAX_COMPILATION_CACHE_DIR=os.environ.get(
                 'SPACER_JAX_TEST_JIT_CACHE',
                 os.path.join(tempfile.gettempdir(), 'spacer_jax_jit_cache')))
  proc = subprocess.run(['bash', os.path.join(ROOT, 'benchmarks', 'gpu_check.sh'), '--smoke',
                         '--out', str(out)], env=env, capture_output=True, text=True,
                        timeout=240)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  report = json.loads(out.read_text())

  assert report['smoke'] is True
  assert report['device_kind'] and report['backend'] == 'cpu' and report['jax_version']
  assert report['git_commit'] and _number(report['wall_s'])
  assert set(report['sections']) == set(SECTIONS)
  for name, section in report['sections'].items():
    assert section['status'] == 'ok', (name, section.get('error'), section.get('traceback'))
    assert 'error' not in section and _number(section['wall_s'])
    for row in section.get('rows', []):
      assert 'error' not in row and 'skipped' not in row, (name, row)

  sim = report['sections']['sim']['rows']
  assert {(r['batch'], r['reset']) for r in sim} == {(b, s) for b in (2, 4)
                                                      for s in (False, True)}
  for row in sim:
    for key in ('agent_steps_per_s', 'scenarios_per_s', 'scenario_steps_per_s', 'compile_s'):
      assert _number(row[key]) and row[key] > 0, (row, key)

  train = report['sections']['train']
  assert (train['worlds'], train['objects']) == (2, 8)
  programs = ('train_step (spacer)', 'simulation', '+reference')
  assert set(train['agent_steps_per_s']) == set(programs)
  assert all(_number(v) and v > 0 for v in train['agent_steps_per_s'].values())
  shares = train['share_of_spacer_step']
  assert set(shares) == {'simulation', 'reference', 'update'}
  assert all(_number(v) for v in shares.values())

  (reference,) = report['sections']['reference']['rows']
  assert _number(reference['teacher_forced_agent_tokens_per_s'])
  assert reference['teacher_forced_agent_tokens_per_s'] > 0

  wosac = report['sections']['realism']
  assert (wosac['scenes'], wosac['rollouts']) == (2, 2)
  assert _number(wosac['scenes_per_s']) and wosac['scenes_per_s'] > 0
  assert wosac['meta_metric'] > 0.5  # log replay scores near the ceiling
