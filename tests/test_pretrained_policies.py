"""Pretrained sim agents in the package (spacer.pretrained): shipping, loading, recipes."""

import json
import os

import jax
import numpy as np
import pytest

from experiments.configs import spacer as spacer_configs
from spacer_jax.eval import sim_agent_policies as policies
from spacer_jax.models.default_vocabulary import DEFAULT_RECIPE
from spacer_jax.spacer import factory, pretrained
from spacer_jax.spacer.acting import Decoding
from spacer_jax.tokens import save_vocabulary
from spacer_jax.tokens.builder import primitive_vocabulary
from spacer_jax.training import Checkpointer


def _finished_run(tmp_path, recipe=DEFAULT_RECIPE, variant='ppo'):
  """A train_spacer workdir as a finished tiny run leaves it (config, checkpoint with
  optimizer-sized state, final metrics, vocabulary elsewhere)."""
  config = spacer_configs.get_config(f'tiny,{variant}')
  vocab = primitive_vocabulary(config.tokens.num_tokens)
  vocab_path = str(tmp_path / 'vocab' / 'vocab.npz')
  os.makedirs(os.path.dirname(vocab_path))
  save_vocabulary(vocab_path, vocab, {'source': 'test primitives', 'recipe': recipe})
  config.tokens.vocabulary = vocab_path
  selfplay = factory.make_selfplay(config, vocab)
  params = selfplay.policy.init(jax.random.key(3),
                                policies.example_observation(selfplay.obs_config))
  run = tmp_path / 'run'
  run.mkdir()
  (run / 'config.json').write_text(config.to_json_best_effort(indent=2))
  ckpt = Checkpointer(str(run / 'checkpoints'))
  ckpt.save(6, {'params': params, 'opt_state': params}, {'iteration': 6, 'agent_steps': 7.0,
                                                         'vocabulary': vocab_path})
  ckpt.close()
  (run / 'final_metrics.json').write_text(json.dumps({'goal_rate': 0.5}))
  return str(run), params, vocab_path


def test_a_shipped_run_loads_as_kind_default(tmp_path, monkeypatch):
  run, params, vocab_path = _finished_run(tmp_path)
  root = str(tmp_path / 'pretrained')
  out = pretrained.ship_policy('ppo', run, 'python -m experiments.train_spacer ...',
                               'abc123', root)
  info = pretrained.pretrained_info('ppo', root)
  assert info['command'].startswith('python -m') and info['commit'] == 'abc123'
  assert info['vocabulary_recipe'] == DEFAULT_RECIPE and info['iteration'] == 6
  assert info['final_metrics'] == {'goal_rate': 0.5}
  # Only the policy parameters travel (no optimizer state), with the vocabulary, and
  # nothing points back to the training machine.
  assert sorted(os.listdir(out)) == ['checkpoints', 'config.json', 'ship.json',
                                     'vocabulary.npz', 'vocabulary.npz.json']
  assert json.loads(open(os.path.join(out, 'config.json')).read())['tokens'][
      'vocabulary'] == 'vocabulary.npz'
  # Reshipping replaces the package whole.
  pretrained.ship_policy('ppo', run, 'again', 'def456', root)
  assert pretrained.pretrained_info('ppo', root)['commit'] == 'def456'
  os.remove(vocab_path)
  monkeypatch.setattr(pretrained, 'PRETRAINED_DIR', root)
  policy, loaded = policies.load_policy('ppo:default', learned_top_k=5)
  assert isinstance(policy, policies.LearnedPolicy) and policy.decoding == Decoding(5)
  assert sorted(loaded) == sorted(params)
  for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_unusable_packages_and_sources_are_refused(tmp_path, monkeypatch):
  root = str(tmp_path / 'pretrained')
  monkeypatch.setattr(pretrained, 'PRETRAINED_DIR', root)
  with pytest.raises(FileNotFoundError, match='no pretrained .spacer. policy is packaged'):
    policies.load_policy('spacer:default')
  run, _, _ = _finished_run(tmp_path, recipe='an-old-recipe')
  with pytest.raises(ValueError, match="holds a 'ppo' run, not 'spacer'"):
    pretrained.ship_policy('spacer', run, 'cmd', 'c', root)
  pretrained.ship_policy('ppo', run, 'cmd', 'c', root)
  with pytest.raises(ValueError, match="vocabulary recipe 'an-old-recipe'"):
    policies.load_policy('ppo:default')
  os.remove(os.path.join(run, 'final_metrics.json'))
  with pytest.raises(ValueError, match='has not finished'):
    pretrained.ship_policy('ppo', run, 'cmd', 'c', root)


def test_packaged_policies_load_and_match_todays_vocabulary():
  """Every pretrained policy in the package loads through load_policy and acts in the
  default vocabulary of today's recipe; spacer:default must be there."""
  shipped = [k for k in pretrained.KINDS if pretrained.pretrained_info(k) is not None]
  assert 'spacer' in shipped, 'spacer:default is not packaged (experiments.ship_policy)'
  for kind in shipped:
    info = pretrained.pretrained_info(kind)
    assert info['vocabulary_recipe'] == DEFAULT_RECIPE, kind
    assert info['command'] and info['commit'], kind
    policy, params = policies.load_policy(f'{kind}:default')
    assert policy.vocab.num_tokens == info['num_tokens'] == 200
    assert policy.num_params(params) == info['num_params']


def test_the_best_state_of_a_finished_run_ships(tmp_path):
  """A run's best/ folder (BestCheckpoint: config, one checkpoint, best.json) ships with
  the run's final metrics and the kept state's iteration and validation."""
  run, params, _ = _finished_run(tmp_path)
  best = os.path.join(run, 'best')
  os.makedirs(best)
  with open(os.path.join(run, 'config.json')) as f:
    config = f.read()
  with open(os.path.join(best, 'config.json'), 'w') as f:
    f.write(config)
  kept = jax.tree.map(lambda x: x + 1.0, params)
  ckpt = Checkpointer(os.path.join(best, 'checkpoints'), max_to_keep=1)
  ckpt.save(2, {'params': kept}, {'iteration': 2, 'validation': {'meta': 0.7}})
  ckpt.close()
  record = {'iteration': 2, 'metrics': {'meta': 0.7, 'min_ade': 6.0}}
  with open(os.path.join(best, 'best.json'), 'w') as f:
    json.dump(record, f)
  root = str(tmp_path / 'pretrained')
  pretrained.ship_policy('ppo', best, 'python -m ...', 'abc123', root)
  info = pretrained.pretrained_info('ppo', root)
  assert info['iteration'] == 2 and info['best'] == record
  assert info['final_metrics'] == {'goal_rate': 0.5} and info['agent_steps'] is None
  _, state, _ = Checkpointer(os.path.join(root, 'ppo', 'checkpoints')).restore(None)
  for x, y in zip(jax.tree.leaves(state['params']), jax.tree.leaves(kept)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # A best/ folder of an unfinished run is refused like the run itself.
  os.remove(os.path.join(run, 'final_metrics.json'))
  with pytest.raises(ValueError, match='has not finished'):
    pretrained.ship_policy('ppo', best, 'python -m ...', 'abc123', root)
