"""SPACER's PPO loss: clipped surrogate, value loss, entropy bonus and KL to p_ref.

Minimised per minibatch (paper's "Objective")::

  L = L_clip + value_coef * L_value - entropy_coef * H(pi) + kl_coef * KL(pi || p_ref)

The KL is exact (closed form over the shared K-token vocabulary), policy first. Every
mean runs over the valid agent-steps only (``PPOBatch.valid``), and advantages are
normalised over those same entries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.spacer.observation import PolicyObservation


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Loss weights (GPUDrive PPO defaults as reported by the paper; beta of SPACER).

  Attributes:
    clip_eps: PPO ratio clip.
    value_coef: weight of the value loss ``0.5 * (V - R)^2``.
    entropy_coef: weight of the entropy bonus.
    kl_coef: beta, weight of ``KL(pi || p_ref)`` (0 = plain PPO).
    value_clip: clip range of the value update around the old value (PPO2 style);
      None = no clipping (the paper's setting).
    normalize_advantages: standardise advantages over the valid entries.
    kl_direction: ``'reverse'`` = KL(pi || anchor) (SPACER, mode-seeking) or
      ``'forward'`` = KL(anchor || pi) (HR-PPO's KL to its behaviour-cloned policy).
  """

  clip_eps: float = 0.2
  value_coef: float = 0.3
  entropy_coef: float = 1e-4
  kl_coef: float = 0.1
  value_clip: float | None = None
  normalize_advantages: bool = True
  kl_direction: str = 'reverse'

  def __post_init__(self):
    if self.kl_direction not in ('reverse', 'forward'):
      raise ValueError(f'LossConfig.kl_direction must be "reverse" or "forward", got '
                       f'{self.kl_direction!r}.')
    if not self.clip_eps > 0:
      raise ValueError(f'LossConfig.clip_eps must be > 0, got {self.clip_eps}.')
    for name in ('value_coef', 'entropy_coef', 'kl_coef'):
      if getattr(self, name) < 0:
        raise ValueError(f'LossConfig.{name} must be >= 0, got {getattr(self, name)}.')
    if self.value_clip is not None and not self.value_clip > 0:
      raise ValueError(f'LossConfig.value_clip must be > 0 or None, got {self.value_clip}.')


@struct.dataclass
class PPOBatch:
  """A minibatch of agent-steps; leading dims ``(...)`` = e.g. (time, world, agent).

  Attributes:
    obs: :class:`PolicyObservation` with the same leading dims.
    actions: ``(...)`` int32 token ids taken.
    log_probs: ``(...)`` log pi_old(action) of the behaviour policy.
    values: ``(...)`` V_old, the critic's value when acting.
    advantages: ``(...)`` GAE advantages.
    returns: ``(...)`` value targets (advantages + values).
    ref_log_probs: ``(..., K)`` log p_ref over the tokens (normalised; -inf allowed where
      the policy has no mass either), or None without an anchor (plain PPO; the
      ``kl_ref`` metric is then the KL to the uniform distribution, ``ln K - H``).
    valid: ``(...)`` bool, the agent acted at that step.
  """

  obs: PolicyObservation
  actions: jax.Array
  log_probs: jax.Array
  values: jax.Array
  advantages: jax.Array
  returns: jax.Array
  ref_log_probs: Optional[jax.Array]
  valid: jax.Array


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean over the entries where ``mask``; a select, so NaN/inf elsewhere is ignored."""
  return (jnp.sum(jnp.where(mask, x, 0.0))
          / jnp.maximum(jnp.sum(mask.astype(jnp.float32)), 1.0))


def entropy(logits: jax.Array, valid: jax.Array | None = None) -> jax.Array:
  """Entropy ``(...)`` in nats of the categorical over the last axis of ``logits``.

  Entries with -inf logits (zero probability) contribute 0; rows where ``valid`` is
  False give 0.
  """
  if valid is not None:
    logits = jnp.where(valid[..., None], logits, 0.0)
  log_p = jax.nn.log_softmax(logits, axis=-1)
  p = jnp.exp(log_p)
  h = -jnp.sum(jnp.where(p > 0, p * jnp.where(p > 0, log_p, 0.0), 0.0), axis=-1)
  return h if valid is None else jnp.where(valid, h, 0.0)


def categorical_kl(logits_p: jax.Array, logits_q: jax.Array,
                   valid: jax.Array | None = None) -> jax.Array:
  """Closed-form ``KL(p || q) = sum_k p_k (log p_k - log q_k)``, ``(...)`` nats.

  Both are unnormalised logits (or log-probabilities) over the last axis. Tokens with
  ``p_k = 0`` (-inf logits) contribute 0 whatever q says; a token with ``p_k > 0`` and
  ``q_k = 0`` makes the KL +inf, as it should. Rows where ``valid`` is False give 0
  (and no NaN gradients, even when their logits are garbage).
  """
  if valid is not None:
    logits_p = jnp.where(valid[..., None], logits_p, 0.0)
    logits_q = jnp.where(valid[..., None], logits_q, 0.0)
  log_p = jax.nn.log_softmax(logits_p, axis=-1)
  log_q = jax.nn.log_softmax(logits_q, axis=-1)
  p = jnp.exp(log_p)
  has_mass = p > 0
  # Guard both branches of the where: -inf - -inf would be NaN and poison gradients.
  diff = jnp.where(has_mass, log_p - jnp.where(has_mass, log_q, 0.0), 0.0)
  kl = jnp.sum(jnp.where(has_mass, p * diff, 0.0), axis=-1)
  return kl if valid is None else jnp.where(valid, kl, 0.0)


def normalize_advantages(advantages: jax.Array, valid: jax.Array,
                         eps: float = 1e-8) -> jax.Array:
  """``(A - mean) / (std + eps)`` over the valid entries; invalid entries become 0."""
  mean = _masked_mean(advantages, valid)
  var = _masked_mean((advantages - mean) ** 2, valid)
  return jnp.where(valid, (advantages - mean) / (jnp.sqrt(var) + eps), 0.0)


ApplyFn = Callable[[Any, PolicyObservation], tuple[jax.Array, jax.Array]]


def ppo_loss(params: Any, apply_fn: ApplyFn, batch: PPOBatch,
             config: LossConfig = LossConfig(), kl_coef: float | jax.Array | None = None
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The SPACER PPO loss of one minibatch.

  Args:
    params: policy parameters (differentiated).
    apply_fn: ``(params, obs) -> (logits (..., K), values (...))``.
    batch: :class:`PPOBatch`.
    config: :class:`LossConfig`.
    kl_coef: beta as a (traced) value that replaces ``config.kl_coef``: a schedule or a
      vmapped sweep over betas (``spacer.train.AnchorWeights``); needs
      ``batch.ref_log_probs``. None = ``config.kl_coef``.

  Returns:
    ``(loss, metrics)``; metrics: ``loss``, ``policy_loss``, ``value_loss``,
    ``entropy``, ``kl_ref``, ``approx_kl`` (old -> new policy), ``clip_fraction``,
    ``valid_fraction``.
  """
  valid = batch.valid.astype(bool)
  logits, values = apply_fn(params, batch.obs)
  if logits.shape[:-1] != valid.shape or values.shape != valid.shape:
    raise ValueError(f'ppo_loss: apply_fn gave logits {logits.shape} and values '
                     f'{values.shape}; expected (*{valid.shape}, K) and {valid.shape} '
                     '(the shape of batch.valid).')
  if batch.ref_log_probs is None and (config.kl_coef or kl_coef is not None):
    raise ValueError('ppo_loss: LossConfig.kl_coef > 0 needs batch.ref_log_probs.')
  beta = config.kl_coef if kl_coef is None else kl_coef
  if batch.ref_log_probs is not None and batch.ref_log_probs.shape != logits.shape:
    raise ValueError(f'ppo_loss: batch.ref_log_probs has shape {batch.ref_log_probs.shape}'
                     f', expected {logits.shape} (the policy logits).')
  log_pi = jax.nn.log_softmax(logits, axis=-1)
  log_prob = jnp.take_along_axis(log_pi, batch.actions[..., None].astype(jnp.int32),
                                 axis=-1)[..., 0]
  # Invalid entries may hold anything (e.g. -inf log-probs): keep them out of exp().
  log_ratio = jnp.where(valid, log_prob - batch.log_probs, 0.0)
  ratio = jnp.exp(log_ratio)

  adv = batch.advantages
  adv = normalize_advantages(adv, valid) if config.normalize_advantages else adv
  unclipped = ratio * adv
  clipped = jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps) * adv
  policy_loss = -_masked_mean(jnp.minimum(unclipped, clipped), valid)

  value_err = (values - batch.returns) ** 2
  if config.value_clip is not None:
    v_clip = batch.values + jnp.clip(values - batch.values, -config.value_clip,
                                     config.value_clip)
    value_err = jnp.maximum(value_err, (v_clip - batch.returns) ** 2)
  value_loss = 0.5 * _masked_mean(value_err, valid)

  ent = _masked_mean(entropy(logits, valid), valid)
  if batch.ref_log_probs is None:
    kl_ref = jnp.log(float(logits.shape[-1])) - ent  # KL(pi || uniform), for the logs.
  elif config.kl_direction == 'reverse':
    kl_ref = _masked_mean(categorical_kl(logits, batch.ref_log_probs, valid), valid)
  else:
    kl_ref = _masked_mean(categorical_kl(batch.ref_log_probs, logits, valid), valid)
  loss = (policy_loss + config.value_coef * value_loss - config.entropy_coef * ent
          + beta * kl_ref)
  metrics = {
      'loss': loss,
      'policy_loss': policy_loss,
      'value_loss': value_loss,
      'entropy': ent,
      'kl_ref': kl_ref,
      'approx_kl': _masked_mean((ratio - 1.0) - log_ratio, valid),
      'clip_fraction': _masked_mean(
          (jnp.abs(ratio - 1.0) > config.clip_eps).astype(jnp.float32), valid),
      'valid_fraction': jnp.mean(valid.astype(jnp.float32)),
  }
  return loss, metrics
