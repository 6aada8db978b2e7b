"""The demo binary end to end on its tiny config, through the real command line."""

import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))


def test_sim_demo_binary_writes_summary_png_and_video(tmp_path):
  workdir = tmp_path / 'demo'
  cmd = [sys.executable, '-m', 'experiments.sim_demo',
         '--config=experiments/configs/sim_demo.py:tiny', f'--workdir={workdir}',
         '--config.sim_agent=idm']
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'scenario-steps/s' in proc.stdout
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['sim_agent'] == 'idm' and summary['controlled_agents'] > 0
  for key in ('collision_rate', 'offroad_rate'):
    assert 0.0 <= summary[key] <= 1.0
  assert (workdir / 'scenario_0.png').stat().st_size > 10_000
  video = summary['videos'][0]
  assert os.path.getsize(video) > 10_000


def test_unknown_config_variant_is_rejected():
  import pytest

  from experiments.configs import sim_demo
  with pytest.raises(ValueError, match='unknown sim_demo config variant'):
    sim_demo.get_config('huge')
