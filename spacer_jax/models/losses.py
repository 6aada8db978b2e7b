"""Next-token losses and accuracies for training the reference model."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from spacer_jax.models.api import ModelLike, ReferenceInputs, reference_log_probs
from spacer_jax.models.reference import position_valid


def next_token_loss(log_probs: jax.Array, token_ids: jax.Array, valid: jax.Array, *,
                    label_smoothing: float = 0.1, weights: Optional[jax.Array] = None,
                    targets: Optional[jax.Array] = None
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Cross entropy of token ``l + 1`` under the output at position ``l``.

  A target counts only when both the input position ``l`` and the target position
  ``l + 1`` are valid.

  Args:
    log_probs: ``(..., N, L, K)`` from ``reference_log_probs``.
    token_ids: ``(..., N, L)`` int32.
    valid: ``(..., N, L)`` bool, e.g. ``position_valid(inputs)``.
    label_smoothing: mass spread uniformly over the K tokens (0.1 in the paper).
    weights: optional ``(..., N)`` per-agent weights (e.g. only modelled agents).
    targets: optional ``(..., N, L)`` int32 target ids, when they differ from the input
      ``token_ids`` (noised tokenisation's ``target_ids``); default ``token_ids``.

  Returns:
    ``(loss, metrics)``: the mean smoothed cross entropy over counted targets and a dict
    with ``loss``, ``nll`` (unsmoothed), ``accuracy_top1``, ``accuracy_top5`` and
    ``num_targets``.
  """
  if log_probs.shape[:-1] != token_ids.shape or valid.shape != token_ids.shape:
    raise ValueError(f'log_probs {log_probs.shape} must be token_ids {token_ids.shape} + '
                     f'(K,), and valid {valid.shape} like token_ids')
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f'label_smoothing must be in [0, 1), got {label_smoothing}')
  if targets is not None and targets.shape != token_ids.shape:
    raise ValueError(f'targets has shape {targets.shape}, expected {token_ids.shape} '
                     f'like token_ids')
  pred = log_probs[..., :-1, :]
  target = token_ids if targets is None else targets
  target = jnp.clip(target[..., 1:], 0, log_probs.shape[-1] - 1)
  mask = (valid[..., :-1] & valid[..., 1:]).astype(jnp.float32)
  if weights is not None:
    if weights.shape != token_ids.shape[:-1]:
      raise ValueError(f'weights has shape {weights.shape}, expected '
                       f'{token_ids.shape[:-1]}')
    mask = mask * weights[..., None].astype(jnp.float32)
  nll = -jnp.take_along_axis(pred, target[..., None], axis=-1)[..., 0]
  smooth = -jnp.mean(pred, axis=-1)
  per_target = (1.0 - label_smoothing) * nll + label_smoothing * smooth
  total = jnp.sum(mask)
  denom = jnp.maximum(total, 1e-6)
  mean = lambda v: jnp.sum(v * mask) / denom
  k5 = min(5, log_probs.shape[-1])
  _, top5 = jax.lax.top_k(pred, k5)
  hit1 = (top5[..., 0] == target).astype(jnp.float32)
  hit5 = jnp.any(top5 == target[..., None], axis=-1).astype(jnp.float32)
  loss = mean(per_target)
  metrics = {'loss': loss, 'nll': mean(nll), 'accuracy_top1': mean(hit1),
             'accuracy_top5': mean(hit5), 'num_targets': total}
  return loss, metrics


def behaviour_cloning_loss(model_or_config: ModelLike, params: Any,
                           inputs: ReferenceInputs, *, label_smoothing: float = 0.1,
                           weights: Optional[jax.Array] = None,
                           rng: Optional[jax.Array] = None
                           ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """``next_token_loss`` of one teacher-forced pass; dropout on when ``rng`` is given."""
  log_probs = reference_log_probs(model_or_config, params, inputs,
                                  deterministic=rng is None, rng=rng)
  return next_token_loss(log_probs, inputs.token_ids, position_valid(inputs),
                         label_smoothing=label_smoothing, weights=weights)
