"""The evaluation report's pure parts on synthetic numbers: the sample and its warnings,
each policy's weights and step, speed-up / size-reduction for every row, outlier counts
and labelled plots (no rollouts: each test runs in well under a second or two)."""

import json
import types

import numpy as np
import pytest

from spacer_jax.apps import evaluate, evaluate_report
from spacer_jax.eval import realism as realism_lib

_COLS = ('meta_metric', 'kinematic', 'interactive', 'map_based', 'min_ade', 'collision_rate',
         'offroad_rate', 'traffic_light_violation_rate')


def _realism(*labels):
  metrics = dict.fromkeys(_COLS + tuple(realism_lib.FEATURE_NAMES), 0.5)
  metrics.update(num_evaluated=30, num_evaluated_vehicle=20, num_evaluated_pedestrian=6,
                 num_evaluated_cyclist=4)
  return {label: {'2025': dict(metrics), '2024': dict(metrics)} for label in labels}


def _speed(num_params, scenarios_per_s):
  return {'num_params': float(num_params), 'scenarios_per_s': scenarios_per_s,
          'batch_size': 4.0, 'seconds_per_batch': 4.0 / scenarios_per_s}


def _report(realism, speeds=None, **kwargs):
  speeds = speeds or {k: _speed(0, 10.0) for k in realism}
  return evaluate_report.markdown_report(realism, evaluate_report.speed_table(speeds), None,
                                         '# title', **kwargs)


def test_report_states_the_sample_and_warns_when_small():
  realism = _realism('log_replay')
  agents = evaluate_report.evaluated_agents(realism)
  assert agents == {'vehicle': 20, 'pedestrian': 6, 'cyclist': 4, 'total': 30}
  small = evaluate_report.sample_summary(2, 2, 4, 8, agents)
  assert small['simulated_seconds'] == pytest.approx(0.8)
  assert [w.split(' ', 2)[1] for w in small['warnings']] == ['scenes', 'rollouts',
                                                            'simulated']
  assert '32' in small['warnings'][1]  # WOSAC's rollout count is the recommendation.
  text = _report(realism, sample=small)
  assert text.index('## Sample') < text.index('## Realism')
  assert '2 scenes x 2 rollouts per scene x 8 simulated steps' in text
  assert '30 evaluated agents (20 vehicle / 6 pedestrian / 4 cyclist)' in text
  assert text.count('> **Warning: small sample**') == 3

  full = evaluate_report.sample_summary(64, 32, 40, 80, agents)
  assert full['warnings'] == []
  assert 'Warning' not in _report(realism, sample=full)
  # Exactly at the thresholds is enough; one below each warns about that one only.
  assert evaluate_report.sample_summary(16, 8, 40, 80)['warnings'] == []
  assert len(evaluate_report.sample_summary(15, 8, 40, 80)['warnings']) == 1
  assert len(evaluate_report.sample_summary(16, 8, 40, 79)['warnings']) == 1


def test_report_lists_each_policys_weights_and_step():
  policies = {'log_replay': {'spec': 'log_replay', 'source': 'no weights', 'step': None},
              'reference': {'spec': 'reference:/pkg/export',
                            'source': 'packaged default reference (commit abc)',
                            'step': 1086},
              'spacer_run': {'spec': 'spacer:/runs/a', 'source': '/runs/a', 'step': 12}}
  text = _report(_realism(*policies), policies=policies)
  assert '## Policies' in text and '| policy | spec | weights | checkpoint step |' in text
  assert '| log_replay | `log_replay` | no weights | - |' in text
  assert '| reference | `reference:/pkg/export` | packaged default reference (commit abc) '\
         '| 1086 |' in text
  assert '| spacer_run | `spacer:/runs/a` | /runs/a | 12 |' in text


def test_report_weights_origin_of_scripted_packaged_and_checkpoints(tmp_path):
  from spacer_jax.models import default as default_lib
  from spacer_jax.training import Checkpointer
  assert evaluate.weights_origin('idm') == ('no weights', None)
  shipped = default_lib.shipped_reference_info()
  if shipped is not None:  # The package directory or its export/: ship.json's step.
    for path in (default_lib.SHIPPED_DIR, f'{default_lib.SHIPPED_DIR}/export'):
      source, step = evaluate.weights_origin(f'reference:{path}', default=True)
      assert source.startswith('packaged default reference (commit ')
      assert step == shipped['step']
  for sub, spec in (('checkpoints', 'spacer'), ('export', 'reference')):
    workdir = tmp_path / spec
    ckpt = Checkpointer(str(workdir / sub))
    ckpt.save(7, {'x': np.zeros(2, np.float32)})
    ckpt.close()
    assert evaluate.weights_origin(f'{spec}:{workdir}') == (str(workdir), 7)
  source, _ = evaluate.weights_origin(f'reference:{tmp_path / "reference"}', default=True)
  assert source == f'default reference, cached in {tmp_path / "reference"}'


def test_report_speed_table_fills_the_ratios_of_every_row():
  speeds = {'log_replay': _speed(0, 100.0), 'reference': _speed(1000, 2.0),
            'spacer_a': _speed(250, 8.0), 'hr_ppo_b': _speed(500, 4.0)}
  rows = {r['policy']: r for r in evaluate_report.speed_table(speeds)}
  assert rows['reference']['speedup_vs_reference'] == 1.0
  assert rows['reference']['size_reduction_vs_reference'] == 1.0
  assert rows['spacer_a']['speedup_vs_reference'] == 4.0
  assert rows['spacer_a']['size_reduction_vs_reference'] == 4.0
  assert rows['hr_ppo_b']['speedup_vs_reference'] == 2.0  # 'hr_ppo' has an underscore.
  assert rows['log_replay']['speedup_vs_reference'] == 50.0
  assert rows['log_replay']['size_reduction_vs_reference'] is None
  text = _report(_realism(*speeds), speeds)
  assert '| log_replay | 0 | 100.000 | 4 | 50.00x | n/a (no parameters) |' in text
  assert '| reference | 1,000 | 2.000 | 4 | 1.00x | 1.00x |' in text
  assert '| spacer_a | 250 | 8.000 | 4 | 4.00x | 4.00x |' in text
  assert 'No reference policy' not in text

  no_ref = {'log_replay': _speed(0, 100.0), 'spacer_a': _speed(250, 8.0)}
  rows = evaluate_report.speed_table(no_ref)
  assert all('speedup_vs_reference' not in r for r in rows)
  text = _report(_realism(*no_ref), no_ref)
  speed = text[text.index('## Speed and size'):]
  assert 'No reference policy was evaluated' in speed and '| - |' not in speed
  assert 'speed-up vs reference' not in speed


def _histograms():
  rng = np.random.default_rng(0)
  log = {n: {'log': rng.uniform(0.0, 3.0, 200), 'sim': np.zeros(0)}
         for n in evaluate_report.HISTOGRAM_FEATURES}
  log['linear_acceleration']['log'][:1] = -15.0  # The log's own finite-difference noise.
  sim = {n: {'log': v['log'], 'sim': rng.uniform(0.0, 3.0, 400)} for n, v in log.items()}
  sim['linear_acceleration']['sim'][:3] = 20.0
  sim['linear_speed']['sim'][:2] = 60.0
  sim['angular_speed']['sim'][:1] = -4.0
  old = {n: v for n, v in sim.items() if not n.startswith('angular')}  # Older .npz files.
  return {'cv': sim, 'old_run': old}


def test_report_counts_and_lists_outliers():
  out = evaluate_report.count_outliers(_histograms())
  assert list(out) == ['log', 'cv', 'old_run']
  assert out['log']['linear_acceleration'] == {'count': 1, 'total': 200}
  assert out['cv']['linear_acceleration'] == {'count': 3, 'total': 400}
  assert out['cv']['linear_speed']['count'] == 2
  assert out['cv']['angular_speed']['count'] == 1
  assert out['cv']['angular_acceleration']['count'] == 0
  assert 'angular_speed' not in out['old_run']
  assert evaluate_report.count_outliers({}) == {}
  text = _report(_realism('cv', 'old_run'), outliers=out)
  table = text[text.index('## Outliers'):]
  assert 'linear_acceleration beyond ±10 m/s^2' in table and 'linear_speed > 45 m/s' in table
  assert '| cv | 2 / 400 (0.50%) | 3 / 400 (0.75%) | 1 / 400 (0.25%) | 0 / 400 (0.00%) |' \
      in table
  assert '| old_run | 2 / 400 (0.50%) | 3 / 400 (0.75%) | - | - |' in table
  assert '## Outliers' not in _report(_realism('cv'))
  # report.json carries the same facts (ranges as [low, high]).
  json.dumps({'limits': evaluate_report.PLAUSIBLE_RANGES, 'counts': out})


def test_report_plots_label_every_axis_and_flag_outliers(tmp_path):
  import matplotlib.pyplot as plt
  hist = _histograms()
  fig = evaluate_report.feature_histograms_figure(hist)
  shown = [ax for ax in fig.axes if ax.axison]
  assert len(shown) == len(evaluate_report.HISTOGRAM_FEATURES)
  for ax in shown:
    assert '(' in ax.get_xlabel() and ax.get_ylabel().startswith('density (per ')
  texts = {ax.get_xlabel(): ' '.join(t.get_text() for t in ax.texts) for ax in shown}
  accel = texts['linear_acceleration (m/s^2)']
  assert '7 outliers beyond ±10 m/s^2 not shown' in accel  # 1 log + 3 + 3 simulated.
  assert 'log: 1' in accel and 'cv: 3' in accel and 'old_run: 3' in accel
  assert 'no outliers beyond ±6.28 rad/s^2' in texts['angular_acceleration (rad/s^2)']
  assert texts['time_to_collision (s)'] == ''  # No plausible range: nothing to flag.
  # Outliers are out of the bins, so the drawn range stays inside the plausible one.
  accel_ax = next(ax for ax in shown if ax.get_xlabel().startswith('linear_acceleration'))
  assert -10.0 < accel_ax.get_xlim()[0] and accel_ax.get_xlim()[1] < 10.0
  plt.close(fig)

  fig = evaluate_report.realism_bars_figure(_realism('cv', 'old_run'))
  assert fig.axes[0].get_xlabel() == 'policy' and '0-1' in fig.axes[0].get_ylabel()
  plt.close(fig)
  study = types.SimpleNamespace(modes=['log_replay', 'cv'], planners=['idm_0', 'idm_1'],
                                table={m: {'idm_0': {'score': 0.4}, 'idm_1': {'score': 0.6}}
                                       for m in ('log_replay', 'cv')})
  fig = evaluate_report.planner_scores_figure(study)
  assert fig.axes[0].get_xlabel() == 'planner score vs log_replay (0-1)'
  assert fig.axes[0].get_ylabel() == 'planner score vs cv (0-1)'
  plt.close(fig)
  paths = evaluate_report.plot_report(_realism('cv', 'old_run'), hist, study, str(tmp_path))
  assert [p.rsplit('/', 1)[1] for p in paths] == ['realism_bars.png',
                                                   'feature_histograms.png',
                                                   'planner_scores.png']


def test_labels_are_unique_even_for_the_same_kind():
  from spacer_jax.apps.evaluate import _label
  taken: set[str] = set()
  specs = [('reference:/runs/ref_catk/export', ''), ('reference:/runs/ref_catk/export',
                                                     '@top_k=1'),
           ('reference:default', ''), ('reference:default', ''), ('spacer:/runs/a', ''),
           ('spacer:/other/a', '')]
  labels = []
  for spec, suffix in specs:
    labels.append(_label(spec, taken, suffix))
    taken.add(labels[-1])
  assert labels == ['reference', 'reference@top_k=1', 'reference_default',
                    'reference_default_2', 'spacer_a', 'spacer_a_2']
