"""One register / get shape for every pluggable part: a new one is a class and a call."""

import dataclasses

import pytest

from spacer_jax.sim.registry import Registry


@pytest.fixture(autouse=True)
def _forget_test_parts():
  """Every part a test here registers is named test_*; remove them afterwards so that
  tests comparing a registry with the built-in names (config rules) pass in any order
  and on any xdist worker."""
  yield
  from spacer_jax.eval import planners
  from spacer_jax.eval import sim_agent_policies as policies
  from spacer_jax.sim import agents, dynamics
  from spacer_jax.spacer import policy
  for registry in (dynamics._MODELS, agents._AGENTS, policy._NETWORKS, policies._POLICIES,
                   planners._FAMILIES):
    for name in registry.names():
      if name.startswith('test_'):
        registry.unregister(name)


def test_registry_refuses_clashes_and_suggests_names():
  reg = Registry('widget')
  reg.register('round', int)
  assert reg.get('round') is int and 'round' in reg and reg.names() == ('round',)
  reg.register('round', int)  # The same value again is fine (module reloads).
  with pytest.raises(ValueError, match="widget 'round' is already registered"):
    reg.register('round', float)
  reg.register('round', float, overwrite=True)
  with pytest.raises(ValueError, match="Unknown widget 'rund'.*did you mean 'round'"):
    reg.get('rund')
  reg.unregister('round')
  reg.unregister('round')  # Absent: nothing to do.
  assert 'round' not in reg and reg.names() == ()


def test_a_new_dynamics_model_and_sim_agent_by_name():
  from spacer_jax.sim import agents, dynamics

  class Slow(dynamics.DeltaGlobal):
    pass

  dynamics.register_dynamics_model('test_slow', Slow)
  assert isinstance(dynamics.get_dynamics_model('test_slow'), Slow)
  with pytest.raises(ValueError, match='Unknown dynamics model'):
    dynamics.get_dynamics_model('bicycel')

  class Replay(agents.LogReplayAgent):
    pass

  agents.register_sim_agent('test_replay', Replay)
  assert isinstance(agents.get_sim_agent('test_replay'), Replay)


def test_a_new_policy_network_is_one_config_field_away():
  import flax.linen as nn
  import jax.numpy as jnp

  from experiments.configs import spacer as spacer_configs
  from spacer_jax.spacer import factory, policy
  from spacer_jax.tokens.builder import primitive_vocabulary

  class Linear(nn.Module):
    """The smallest network with the interface: one Dense over the ego features."""
    num_tokens: int = 8
    scale: float = 1.0

    @nn.compact
    def __call__(self, obs):
      logits = self.scale * nn.Dense(self.num_tokens)(obs.ego)
      return logits, jnp.zeros(logits.shape[:-1])

  policy.register_policy_network('test_linear', Linear)
  config = spacer_configs.get_config('tiny')
  config.policy = {'network': 'test_linear', 'scale': 2.0}
  selfplay = factory.make_selfplay(config, primitive_vocabulary(16))
  assert isinstance(selfplay.policy, Linear)
  assert (selfplay.policy.num_tokens, selfplay.policy.scale) == (16, 2.0)
  config.policy = {'network': 'test_linear', 'width': 3}
  with pytest.raises(ValueError, match=r"policy network 'test_linear' has no field\(s\) "
                     r"\['width'\]"):
    factory.make_selfplay(config, primitive_vocabulary(16))
  assert dataclasses.fields(policy.get_policy_network('late_fusion', num_tokens=4))


def test_a_new_evaluation_policy_and_planner_family_by_name():
  from spacer_jax.eval import planners
  from spacer_jax.eval import sim_agent_policies as policies

  policies.register_eval_policy(
      'test_frozen', lambda path, *, env, vocab, **settings: (
          policies.ConstantVelocityPolicy(2), None), takes_path=False)
  policy, params = policies.load_policy('test_frozen')
  assert isinstance(policy, policies.ConstantVelocityPolicy) and params is None
  with pytest.raises(ValueError, match="'test_frozen' takes no path"):
    policies.load_policy('test_frozen:/tmp')
  with pytest.raises(ValueError, match='unknown policy spec .*test_frozen'):
    policies.load_policy('test_frozn')

  planners.register_planner_family('test_idm_pair', lambda n: planners.idm_planner_grid(2))
  assert sorted(planners.get_planner_family('test_idm_pair', 5)) == ['idm_0', 'idm_1']
  assert len(planners.get_planner_family('idm', 3)) == 3


def test_runs_from_before_a_field_existed_still_resume(tmp_path):
  import ml_collections

  from spacer_jax.training import runs
  old = ml_collections.ConfigDict({'policy': {'width': 4}})
  runs.accept_config(str(tmp_path), old)
  new = ml_collections.ConfigDict({'policy': {'width': 4, 'network': 'late_fusion'}})
  with pytest.raises(runs.RunConfigMismatch, match='policy.network'):
    runs.accept_config(str(tmp_path), new)
  runs.accept_config(str(tmp_path), new, added_fields={'policy.network': 'late_fusion'})
  other = ml_collections.ConfigDict({'policy': {'width': 4, 'network': 'other'}})
  with pytest.raises(runs.RunConfigMismatch, match='policy.network'):
    runs.accept_config(str(tmp_path), other, added_fields={'policy.network': 'late_fusion'})


@pytest.mark.parametrize('variant', ['spacer', 'hr_ppo', 'ppo'])
def test_runs_of_the_old_config_layout_resume_and_load(tmp_path, variant):
  """Runs written when alpha lived in reward, beta in loss and HR-PPO's lambda in hr_ppo
  resume under today's single anchor block, and rebuild the same self-play setup."""
  import ml_collections

  from experiments.configs import spacer as spacer_configs
  from spacer_jax.spacer import factory
  from spacer_jax.training import runs
  today = spacer_configs.get_config(f'tiny,{variant}')
  old = today.to_dict()
  anchor = old.pop('anchor')
  old['reward']['likelihood_weight'] = anchor['likelihood_weight']
  old['loss']['kl_coef'] = 0.0 if variant == 'hr_ppo' else anchor['kl_coef']
  old['hr_ppo']['kl_coef'] = anchor['kl_coef'] if variant == 'hr_ppo' else 0.05
  assert factory.upgrade_config(old) == today.to_dict()
  assert factory.upgrade_config(today.to_dict()) == today.to_dict()
  runs.accept_config(str(tmp_path), ml_collections.ConfigDict(old))
  with pytest.raises(runs.RunConfigMismatch, match='anchor'):
    runs.accept_config(str(tmp_path), today)
  runs.accept_config(str(tmp_path), today, upgrade=factory.upgrade_config)
  assert factory.upgraded(ml_collections.ConfigDict(old)).anchor == today.anchor
