"""Builds the self-play pieces of a run from its config: one place for the mapping.

The trainer (``spacer_jax.apps.train_spacer``), evaluation of a trained run
(``spacer_jax.eval.sim_agent_policies``) and the benchmarks all build the vocabulary and
the :class:`SelfPlay` of a ``train_spacer`` config here, so a trained policy is always
rebuilt exactly as it was trained.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from spacer_jax.models.default_vocabulary import (
  default_vocabulary_path,
  get_or_build_default_vocabulary,
)
from spacer_jax.sim.config import EnvConfig
from spacer_jax.sim.dynamics import get_dynamics_model
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.spacer.observation import ObservationConfig
from spacer_jax.spacer.policy import get_policy_network
from spacer_jax.spacer.rewards import RewardConfig
from spacer_jax.spacer.selfplay import SelfPlay
from spacer_jax.tokens import TokenEnvironment, TokenVocabulary, load_vocabulary


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
  """A ``train_spacer`` config (as a dict) written by any earlier version, in today's
  layout; today's configs come back unchanged.

  Older runs kept alpha in ``reward.likelihood_weight``, beta in ``loss.kl_coef`` and
  HR-PPO's lambda in ``hr_ppo.kl_coef`` (with ``loss.kl_coef`` 0); today they live once,
  in the ``anchor`` block.
  """
  if 'anchor' in config or 'reward' not in config:
    return config
  out = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
  hr_ppo = out.get('variant') == 'hr_ppo'
  loss_kl = out.get('loss', {}).pop('kl_coef', 0.0)
  hr_kl = out.get('hr_ppo', {}).pop('kl_coef', 0.0)
  out['anchor'] = {
      'likelihood_weight': out['reward'].pop('likelihood_weight', 0.0),
      'kl_coef': hr_kl if hr_ppo else loss_kl,
      'temperature': out.get('reference', {}).pop('anchor_temperature', 1.0),
      'kl_warmup_factor': 1.0,
      'kl_warmup_steps': 0,
  }
  return out


def upgraded(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """:func:`upgrade_config` of a ConfigDict (the same object when already current)."""
  if 'anchor' in config:
    return config
  return ml_collections.ConfigDict(upgrade_config(config.to_dict()))


def load_vocab(config: ml_collections.ConfigDict) -> tuple[TokenVocabulary, str]:
  """The token vocabulary named by ``config.tokens`` (default: the cached one) and its
  path."""
  if config.tokens.vocabulary:
    return load_vocabulary(config.tokens.vocabulary), config.tokens.vocabulary
  vocab = get_or_build_default_vocabulary(config.tokens.num_tokens,
                                          config.tokens.steps_per_token)
  return vocab, default_vocabulary_path(config.tokens.num_tokens,
                                        config.tokens.steps_per_token)


def make_selfplay(config: ml_collections.ConfigDict, vocab: TokenVocabulary) -> SelfPlay:
  """The self-play environment, policy network, observation and reward of a
  ``train_spacer`` config (``policy``, ``obs``, ``reward`` and ``env`` blocks; any
  earlier layout, see :func:`upgrade_config`)."""
  config = upgraded(config)
  env = MultiAgentEnvironment(get_dynamics_model('delta_global'),
                              EnvConfig(metrics=('overlap', 'offroad'), rewards={}))
  fields = dict(config.policy)
  # Runs written before networks were registered hold no name: theirs is late fusion.
  network = fields.pop('network', 'late_fusion')
  policy = get_policy_network(network, num_tokens=vocab.num_tokens, **fields)
  # Runs written before the obs block held every field get the dataclass defaults.
  obs = ObservationConfig(**config.obs)
  reward = RewardConfig(**config.reward.to_dict())
  return SelfPlay(TokenEnvironment(env, vocab), policy, obs, reward, config.env.policy_steps)


__all__ = ['load_vocab', 'make_selfplay', 'upgrade_config', 'upgraded']
