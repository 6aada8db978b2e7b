"""Builds the self-play pieces of a run from its config: one place for the mapping.

The trainer (``spacer_jax.apps.train_spacer``), evaluation of a trained run
(``spacer_jax.eval.sim_agent_policies``) and the benchmarks all build the vocabulary and
the :class:`SelfPlay` of a ``train_spacer`` config here, so a trained policy is always
rebuilt exactly as it was trained.
"""

from __future__ import annotations

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
  ``train_spacer`` config (``policy``, ``obs``, ``reward`` and ``env`` blocks)."""
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


__all__ = ['load_vocab', 'make_selfplay']
