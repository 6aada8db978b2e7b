"""Likelihood estimators: how probable are the logged values under the rollouts?

For each evaluated agent, the simulated values of a feature (all rollouts, and for time
series all 80 steps pooled) form a histogram; a logged value scores the log of its
bin's smoothed probability:

    log p(bin b) = log(count_b + c) - log(num_samples + num_bins * c)

with pseudocount ``c``. Values are clipped into ``[min_val, max_val]`` first, so values
outside the range land in the end bins. Bins are half-open ``[e_k, e_{k+1})`` with
``num_bins + 1`` evenly spaced float32 edges, except the last one, which is closed.

Two details follow the official evaluator exactly because they change scores:

* The simulated samples are *not* masked: every rollout step counts, including the
  steps where a finite difference is undefined (NaN) - the evaluator's histogram puts
  NaN in the **last** bin, so we do too.
* A Bernoulli feature is a 2-bin histogram over ``[-0.5, 1.5]`` of 0/1 flags.

All functions are pure jnp and broadcast over leading dims.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spacer_jax.eval.wosac_config import BERNOULLI, FeatureConfig


def bin_index(values: jax.Array, min_val: float, max_val: float, num_bins: int
              ) -> jax.Array:
  """Histogram bin of each value, int32 with ``values``' shape.

  Clips into the range, counts the interior edges at or below the value; NaN goes to
  the last bin (the evaluator's behaviour).
  """
  values = jnp.asarray(values, jnp.float32)
  edges = jnp.linspace(jnp.float32(min_val), jnp.float32(max_val), num_bins + 1,
                       dtype=jnp.float32)
  clipped = jnp.clip(values, jnp.float32(min_val), jnp.float32(max_val))
  inner = edges[1:num_bins]
  bins = jnp.sum(clipped[..., None] >= inner, axis=-1, dtype=jnp.int32)
  return jnp.where(jnp.isnan(values), num_bins - 1, bins)


def histogram_log_likelihood(log_values: jax.Array, sim_values: jax.Array,
                             min_val: float, max_val: float, num_bins: int,
                             pseudocount: float) -> jax.Array:
  """Log-probability of each logged value under the histogram of the simulated ones.

  Args:
    log_values: ``(..., L)`` logged samples (e.g. the 80 logged steps of an agent).
    sim_values: ``(..., S)`` simulated samples of the same population (e.g. 32 rollouts
      x 80 steps, flattened); every entry counts.
    min_val, max_val, num_bins, pseudocount: the histogram settings.

  Returns:
    ``(..., L)`` float32 natural-log likelihoods (always finite: ``pseudocount > 0``).
  """
  sim_bins = bin_index(sim_values, min_val, max_val, num_bins)
  counts = jnp.sum(jax.nn.one_hot(sim_bins, num_bins, dtype=jnp.float32), axis=-2)
  log_probs = (jnp.log(counts + pseudocount)
               - jnp.log(sim_values.shape[-1] + num_bins * pseudocount))  # (..., B)
  log_bins = bin_index(log_values, min_val, max_val, num_bins)
  return jnp.take_along_axis(log_probs, log_bins, axis=-1)


def bernoulli_log_likelihood(log_flags: jax.Array, sim_flags: jax.Array,
                             pseudocount: float) -> jax.Array:
  """Log-probability of each logged flag under the simulated flags' frequency.

  Args:
    log_flags: ``(...)`` bool, the logged "any event" flag per agent.
    sim_flags: ``(..., S)`` bool, the simulated flags (one per rollout).
    pseudocount: additive smoothing of both bins.

  Returns:
    ``(...)`` float32 log-likelihoods.
  """
  out = histogram_log_likelihood(jnp.asarray(log_flags, jnp.float32)[..., None],
                                 jnp.asarray(sim_flags, jnp.float32), -0.5, 1.5, 2,
                                 pseudocount)
  return out[..., 0]


def log_likelihood(config: FeatureConfig, log_values: jax.Array, sim_values: jax.Array
                   ) -> jax.Array:
  """Dispatches on ``config.estimator``; shapes as in the two estimators above."""
  if config.estimator == BERNOULLI:
    return bernoulli_log_likelihood(log_values, sim_values, config.pseudocount)
  return histogram_log_likelihood(log_values, sim_values, config.min_val, config.max_val,
                                  config.num_bins, config.pseudocount)


def masked_mean(values: jax.Array, mask: jax.Array, axis=None) -> jax.Array:
  """Mean of ``values`` where ``mask``; NaN where nothing is valid."""
  mask = jnp.asarray(mask, bool)
  total = jnp.sum(jnp.where(mask, values, 0.0), axis=axis)
  count = jnp.sum(mask, axis=axis, dtype=jnp.float32)
  return total / count
