"""The value type every simulator metric returns."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class MetricResult:
  """A per-object metric at the current step.

  Attributes:
    value: ``(..., num_objects)`` float32; lower is better unless the metric says
      otherwise (flags are 0/1).
    valid: ``(..., num_objects)`` bool; False where the metric is undefined (object
      absent, log missing, no road edges ...).
  """

  value: jax.Array
  valid: jax.Array

  @classmethod
  def create(cls, value: jax.Array, valid: jax.Array) -> MetricResult:
    """Builds a result with invalid entries zeroed, so sums over objects are safe."""
    value = jnp.asarray(value, jnp.float32)
    valid = jnp.asarray(valid, bool)
    return cls(value=jnp.where(valid, value, 0.0), valid=valid)
