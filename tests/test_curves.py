"""Training-curve plots (viz.curves, experiments.plot_curves)."""

import json

import pytest

from experiments.plot_curves import parse_runs
from spacer_jax.viz import curves


def _run(tmp_path, name, anchored):
  workdir = tmp_path / name
  workdir.mkdir()
  rows = []
  for step in range(1, 6):
    row = {'step': step, 'total_agent_steps': 1000.0 * step, 'goal_rate': 0.1 * step,
           'collision_rate': 0.1, 'offroad_rate': 0.5 / step, 'kl_ref': 3.0 / step,
           'entropy': 5.0 - step}
    if anchored:
      row['anchor_entropy'] = 2.0
    rows.append(row)
    if step % 2 == 0:
      rows.append({'step': step, 'eval/goal_rate': 0.2, 'eval/collision_rate': 0.05,
                   'eval/offroad_rate': 0.3, 'val/meta': 0.5 + 0.01 * step,
                   'val/collision': 0.1, 'val/min_ade': 3.0})
  (workdir / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  return str(workdir)


def test_curves_of_several_runs_in_one_png(tmp_path):
  runs = {'spacer': _run(tmp_path, 'a', True), 'ppo': _run(tmp_path, 'b', False)}
  rows = curves.read_metrics(runs['spacer'])
  assert curves._series(rows, 'eval/goal_rate') == ([2000.0, 4000.0], [0.2, 0.2])
  assert curves._series(rows, 'val/meta') == ([2000.0, 4000.0], [0.52, 0.54])
  out = curves.plot_training_curves(runs, str(tmp_path / 'out' / 'curves.png'))
  with open(out, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  with pytest.raises(FileNotFoundError, match='no metrics.jsonl'):
    curves.read_metrics(str(tmp_path))


def test_run_specs():
  assert parse_runs(['spacer:/x/a', '/y/ppo_run/']) == {'spacer': '/x/a',
                                                        'ppo_run': '/y/ppo_run/'}
