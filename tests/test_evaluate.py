"""The evaluate binary end to end on a tiny config: a trained (tiny) SPACER checkpoint and
two scripted baselines, realism under both WOSAC configs, speed table, planner study,
plots, videos, and a re-run that keeps the finished results."""

import json
import os

import numpy as np
import pytest

from experiments.configs import evaluate as evaluate_configs
from experiments.configs import spacer as spacer_configs
from spacer_jax.apps import evaluate, train_spacer
from spacer_jax.spacer import factory


@pytest.fixture(scope='module')
def spacer_workdir(tmp_path_factory):
  """A train_spacer workdir holding a freshly initialised tiny policy (no training: the
  evaluation only needs a loadable checkpoint)."""
  import jax
  import optax

  from spacer_jax.spacer import train as train_lib
  from spacer_jax.training import Checkpointer
  workdir = tmp_path_factory.mktemp('spacer')
  config = spacer_configs.get_config('tiny')
  (workdir / 'config.json').write_text(config.to_json_best_effort(indent=2))
  vocab, _ = factory.load_vocab(config)
  selfplay = factory.make_selfplay(config, vocab)
  worlds = selfplay.prepare(train_spacer.ScenarioSource(config).eval())
  state = train_lib.init_train_state(selfplay, optax.adam(1e-3), worlds,
                                     jax.random.PRNGKey(0))
  ckpt = Checkpointer(str(workdir / 'checkpoints'))
  ckpt.save(1, state, {'iteration': 1, 'variant': 'spacer'})
  ckpt.close()
  return str(workdir)


def test_evaluate_writes_the_report_and_resumes(tmp_path, spacer_workdir):
  config = evaluate_configs.get_config('tiny')
  workdir = str(tmp_path / 'eval')
  report = evaluate.run_evaluation(config, workdir, [f'spacer:{spacer_workdir}'])
  labels = list(report['realism'])
  assert labels[:2] == ['log_replay', 'constant_velocity'] and labels[2].startswith('spacer')
  for label in labels:
    for version in ('2025', '2024'):
      r = report['realism'][label][version]
      assert 0.0 <= r['meta_metric'] <= 1.0, (label, version, r)
  # Log replay reproduces the log: its minADE is zero and it is the most realistic.
  log, cv = report['realism']['log_replay']['2025'], report['realism']['constant_velocity']['2025']
  assert log['min_ade'] == pytest.approx(0.0, abs=1e-3)
  assert log['meta_metric'] > cv['meta_metric']
  speed = {row['policy']: row for row in report['speed']}
  assert speed['log_replay']['num_params'] == 0 and speed['log_replay']['scenarios_per_s'] > 0
  assert speed[labels[2]]['num_params'] > 1000
  study = report['planner_study']
  assert set(study['modes']) == {'log_replay', labels[2]}
  assert {'idm_0', 'idm_1', f'ego_{labels[2]}'} <= set(study['planners'])
  assert len(study['correlations']) == 1
  for name in ('report.md', 'report.json', 'planner_study.json',
               'plots/realism_bars.png', 'plots/feature_histograms.png',
               'plots/planner_scores.png'):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  videos = os.listdir(os.path.join(workdir, 'videos'))
  assert len(videos) == len(labels)
  text = open(os.path.join(workdir, 'report.md')).read()
  assert '## Speed and size' in text and 'log_replay' in text
  assert '## Rates per agent type' in text and 'off-road excl. log' in text
  # The tiny sample is flagged (2 scenes, 2 rollouts, 8 of 80 steps), each policy's weights
  # are named, the missing reference is said in words and outliers are listed.
  assert text.count('> **Warning: small sample**') == 3
  sample = report['sample']
  assert (sample['num_scenes'], sample['rollouts_per_scene']) == (2, 2)
  assert len(sample['warnings']) == 3 and sample['evaluated_agents']['total'] > 0
  assert report['policies']['log_replay'] == {'spec': 'log_replay', 'source': 'no weights',
                                              'step': None}
  assert report['policies'][labels[2]] == {'spec': f'spacer:{spacer_workdir}',
                                           'source': spacer_workdir, 'step': 1}
  assert f'| {labels[2]} | `spacer:{spacer_workdir}` | {spacer_workdir} | 1 |' in text
  assert 'No reference policy was evaluated' in text
  assert '## Outliers' in text and set(report['outliers']['counts']) == {'log', *labels}
  # Every agent valid at the current step stays in the rollouts (WOSAC's sim set), and
  # the per-type counts add up.
  assert log['invalid_sim_steps'] == 0
  assert sum(log[f'num_evaluated_{t}'] for t in ('vehicle', 'pedestrian', 'cyclist')) <= (
      log['num_evaluated'])
  assert 0.0 <= log['offroad_rate_excl_log_offroad'] <= 1.0

  # A second run reuses every finished policy's results (same numbers, no rollouts).
  stamp = os.path.getmtime(os.path.join(workdir, 'results', 'log_replay.json'))
  config.planners.enabled = False
  again = evaluate.run_evaluation(config, workdir, [f'spacer:{spacer_workdir}'])
  assert os.path.getmtime(os.path.join(workdir, 'results', 'log_replay.json')) == stamp
  np.testing.assert_allclose(again['realism']['log_replay']['2025']['meta_metric'],
                             log['meta_metric'])
  with open(os.path.join(workdir, 'report.json')) as f:
    assert json.load(f)['planner_study'] is None

  # A finished result is kept only for the same spec and decoding: one written for
  # another policy under this label is evaluated again, never reported as this one's.
  path = os.path.join(workdir, 'results', 'log_replay.json')
  with open(path) as f:
    forged = json.load(f)
  forged['spec'], forged['realism']['2025']['meta_metric'] = 'constant_velocity', 0.123
  with open(path, 'w') as f:
    json.dump(forged, f)
  third = evaluate.run_evaluation(config, workdir, [f'spacer:{spacer_workdir}'])
  np.testing.assert_allclose(third['realism']['log_replay']['2025']['meta_metric'],
                             log['meta_metric'])


def test_bad_specs_and_files_are_named(tmp_path):
  config = evaluate_configs.get_config('tiny')
  with pytest.raises(ValueError, match='unknown policy spec'):
    evaluate.run_evaluation(config, str(tmp_path), ['bogus:thing'])
  config.data.files = str(tmp_path / 'none-*.tfrecord')
  with pytest.raises((ValueError, FileNotFoundError)):
    evaluate.load_scenarios(config)


def test_policy_specs_carry_decoding_overrides():
  from spacer_jax.apps.evaluate import split_decoding
  assert split_decoding('reference:default') == ('reference:default', {})
  assert split_decoding('reference:/a/b@top_k=1@temperature=0.5') == (
      'reference:/a/b', {'top_k': 1, 'temperature': 0.5})
  assert split_decoding('spacer:/run@learned_top_k=5') == ('spacer:/run',
                                                           {'learned_top_k': 5})
  with pytest.raises(ValueError, match='decoding override'):
    split_decoding('reference:default@topk=1')
  with pytest.raises(ValueError, match='not an int'):
    split_decoding('reference:default@top_k=one')
  assert split_decoding('reference:default@feasible=0') == ('reference:default',
                                                            {'feasible': False})
  with pytest.raises(ValueError, match='not 0 or 1'):
    split_decoding('reference:default@feasible=no')
  # Per agent type: vehicle/pedestrian/cyclist.
  assert split_decoding('reference:default@top_k=32/8/16@temperature=0.7/1/0.7') == (
      'reference:default', {'top_k': (32, 8, 16), 'temperature': (0.7, 1.0, 0.7)})
  with pytest.raises(ValueError, match='three joined'):
    split_decoding('reference:default@top_k=32/8')


def test_in_training_validation_is_evaluates_realism(spacer_workdir):
  """train_spacer's validation of a policy equals experiments.evaluate's realism for the
  same policy, scenes and rollouts (the same scenes loaded each binary's own way)."""
  import jax

  from spacer_jax.eval import sim_agent_policies as policies
  config = spacer_configs.get_config('tiny')
  vocab, _ = factory.load_vocab(config)
  selfplay = factory.make_selfplay(config, vocab)
  validate = train_spacer.make_validation(config, selfplay,
                                          train_spacer.ScenarioSource(config).eval())
  policy, params = policies.load_policy(f'spacer:{spacer_workdir}',
                                        learned_top_k=config.train.eval_top_k)
  val = validate(params)

  eval_config = evaluate_configs.get_config('tiny')
  eval_config.fast_compile = False  # As the trainer compiles.
  eval_config.data.num_scenarios = config.data.num_eval_scenarios
  eval_config.realism.num_rollouts = config.train.val_rollouts
  eval_config.realism.num_steps = config.env.policy_steps
  eval_config.realism.batch_size = config.train.val_batch_size
  scenes = evaluate.load_scenarios(eval_config)
  entry = evaluate.PolicyEntry('spacer', f'spacer:{spacer_workdir}', policy, params,
                               policy.vocab)
  report = evaluate.evaluate_realism(entry, scenes, eval_config,
                                     jax.random.PRNGKey(config.seed + 2))['2025']
  assert val['meta'] == pytest.approx(report['meta_metric'], abs=1e-6)
  assert val['min_ade'] == pytest.approx(report['min_ade'], abs=1e-5)
  assert val['collision'] == pytest.approx(report['collision_rate'], abs=1e-6)
  assert val['offroad_excl_log'] == pytest.approx(report['offroad_rate_excl_log_offroad'],
                                                  nan_ok=True, abs=1e-6)
  assert val['linear_speed_likelihood'] == pytest.approx(report['linear_speed'], abs=1e-6)
  assert 0.0 < val['meta'] < 1.0
