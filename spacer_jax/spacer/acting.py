"""The one way a self-play policy acts: logits -> tokens, by a :class:`Decoding`.

Self-play rollouts (``SelfPlay.rollout``, the PPO data), in-training evaluation
(``train.make_evaluate``) and ``experiments.evaluate`` (``LearnedPolicy``) all call
:func:`make_policy_fn`; only the decoding differs. Training samples from the whole
distribution (the PPO ratio needs the behaviour policy's own probabilities); the paper
reports SPACER at top-5 and the report adds greedy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import struct

from spacer_jax.models.rollout import sample_tokens
from spacer_jax.spacer.observation import PolicyObservation


@dataclasses.dataclass(frozen=True)
class Decoding:
  """How each agent's token distribution becomes its action.

  Attributes:
    top_k: sample among the ``top_k`` most likely tokens; 0 = the whole distribution,
      1 = greedy (the most likely token, no randomness).
    temperature: divides the logits before sampling (> 0; ignored when greedy).
  """

  top_k: int = 0
  temperature: float = 1.0

  def __post_init__(self):
    if self.top_k < 0:
      raise ValueError(f'Decoding.top_k={self.top_k}; expected >= 0 (0 = the whole '
                       'distribution, 1 = greedy).')
    if not self.temperature > 0:
      raise ValueError(f'Decoding.temperature={self.temperature}; expected > 0 (use '
                       'top_k=1 for greedy).')

  @property
  def greedy(self) -> bool:
    return self.top_k == 1


SAMPLE = Decoding()  # Training: the policy's own distribution.
GREEDY = Decoding(top_k=1)


def decode_actions(logits: jax.Array, rng: jax.Array, decoding: Decoding) -> jax.Array:
  """One token per row of ``logits (..., K)`` by ``decoding``; ``(...)`` int32."""
  if decoding.greedy:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  if decoding.top_k == 0:
    return jax.random.categorical(rng, logits / decoding.temperature,
                                  axis=-1).astype(jnp.int32)
  return sample_tokens(logits, rng, decoding.top_k, decoding.temperature)


@struct.dataclass
class PolicyStep:
  """What one call of a policy function returns; shapes ``(..., N)`` and ``(..., N, K)``.

  Attributes:
    actions: int32 token ids chosen by the decoding.
    log_probs: log pi(action) under the policy's own (undecoded) distribution: the
      behaviour probabilities of the PPO ratio when the decoding is :data:`SAMPLE`.
    values: critic values.
    logits: the policy's token logits.
  """

  actions: jax.Array
  log_probs: jax.Array
  values: jax.Array
  logits: jax.Array


PolicyFn = Callable[[Any, PolicyObservation, jax.Array], PolicyStep]


def make_policy_fn(network: nn.Module, decoding: Decoding = SAMPLE) -> PolicyFn:
  """``policy_fn(params, obs, rng) -> PolicyStep``: ``network`` decoded by ``decoding``.

  ``network.apply(params, obs)`` must return ``(logits (..., N, K), values (..., N))``
  (every registered policy network does). Pure and jittable.
  """
  def policy_fn(params: Any, obs: PolicyObservation, rng: jax.Array) -> PolicyStep:
    logits, values = network.apply(params, obs)
    actions = decode_actions(logits, rng, decoding)
    log_pi = jax.nn.log_softmax(logits, axis=-1)
    log_prob = jnp.take_along_axis(log_pi, actions[..., None], axis=-1)[..., 0]
    return PolicyStep(actions=actions, log_probs=log_prob, values=values, logits=logits)

  return policy_fn


__all__ = ['Decoding', 'GREEDY', 'PolicyFn', 'PolicyStep', 'SAMPLE', 'decode_actions',
           'make_policy_fn']
