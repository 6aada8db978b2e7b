"""Token speed of a policy against the expert's along logged states (bc_fit.py,
token_speed_bias.py)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spacer_jax.tokens.feasibility import token_speeds

MOVING_MPS = 2.0  # A vehicle "moves" when its expert token is faster than this.


def speed_gaps(logits: jax.Array, tokens: jax.Array, type_index: jax.Array,
               valid: Any, vocab: Any) -> tuple[dict[str, Any], np.ndarray]:
  """Token speed of a policy against the expert's, for vehicles and moving vehicles.

  Args:
    logits: ``(..., N, K)`` policy logits along expert states.
    tokens: ``(..., N)`` expert token ids; ``type_index`` ``(..., N)``; ``valid``
      ``(..., N)`` bool numpy, the rows to score.
    vocab: the token vocabulary (token speeds in m/s per type).

  Returns:
    ``(report, moving)``: for ``vehicle_`` and ``moving_vehicle_`` rows the mean
    expected, temperature-0.5 and greedy token speed minus the expert's (m/s), the
    probability within 0.3 m/s of the expert speed and the expert speed; ``moving``
    ``(..., N)`` bool numpy, the moving-vehicle rows (expert faster than
    :data:`MOVING_MPS`).
  """
  speeds = token_speeds(vocab)[type_index]  # (..., N, K)
  expert = np.asarray(jnp.take_along_axis(speeds, tokens[..., None], -1)[..., 0])
  expected = np.asarray(jnp.sum(jax.nn.softmax(logits, -1) * speeds, -1))
  sharp = np.asarray(jnp.sum(jax.nn.softmax(logits / 0.5, -1) * speeds, -1))
  greedy = np.asarray(jnp.take_along_axis(speeds, jnp.argmax(logits, -1)[..., None],
                                          -1)[..., 0])
  near = np.abs(np.asarray(speeds) - expert[..., None]) < 0.3
  mass_near = np.asarray(jnp.sum(jnp.where(near, jax.nn.softmax(logits, -1), 0.0), -1))
  vehicle = np.asarray(valid) & (np.asarray(type_index) == 0)
  out: dict[str, Any] = {}
  moving = vehicle & (expert > MOVING_MPS)
  for name, rows in (('vehicle', vehicle), ('moving_vehicle', moving)):
    out.update({
        f'{name}_expert_speed': float(expert[rows].mean()),
        # Probability on tokens within 0.3 m/s of the expert token's speed.
        f'{name}_mass_near_expert_speed': float(mass_near[rows].mean()),
        f'{name}_expected_minus_expert': float((expected - expert)[rows].mean()),
        f'{name}_t05_minus_expert': float((sharp - expert)[rows].mean()),
        f'{name}_greedy_minus_expert': float((greedy - expert)[rows].mean()),
    })
  return out, moving
