"""Generalised advantage estimation over time-major rollouts, with per-agent validity.

Conventions (time axis first, any trailing dims such as (world, agent)):

* ``rewards[t]``, ``values[t]``, ``dones[t]`` belong to the transition taken at step t;
  ``dones[t]`` means the agent's episode ended with it (goal, collision with removal,
  time limit treated as terminal...), so no value is bootstrapped past t.
* ``valid[t]`` says that the agent acted at t. Agents removed (or frozen) mid-episode,
  and slots that are not agents, are invalid: they get advantage and return 0. A
  valid step followed by an invalid one is cut there like a terminal step (there is
  no value estimate to bootstrap from); mark the last acting step done.
* ``last_value`` bootstraps after the final step, unless that step is done.

    delta_t = r_t + gamma * (1 - d_t) * c_t * V_{t+1} - V_t
    A_t     = delta_t + gamma * lam * (1 - d_t) * c_t * A_{t+1}

with ``c_t = valid[t + 1]`` (1 after the last step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def compute_gae(rewards: jax.Array, values: jax.Array, dones: jax.Array,
                last_value: jax.Array, gamma: float = 0.99, lam: float = 0.95,
                valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Advantages and value targets by a reverse ``lax.scan``.

  Args:
    rewards: ``(T, ...)`` float.
    values: ``(T, ...)`` critic values V(s_t).
    dones: ``(T, ...)`` bool, the episode of that agent ended with step t.
    last_value: ``(...)`` V(s_T), bootstrap after the last step.
    gamma: discount.
    lam: GAE lambda.
    valid: ``(T, ...)`` bool, the agent acted at step t; None = all valid.

  Returns:
    ``(advantages, returns)``, both ``(T, ...)`` float32; 0 where invalid.
  """
  rewards = jnp.asarray(rewards, jnp.float32)
  shape = rewards.shape
  if rewards.ndim < 1:
    raise ValueError('compute_gae: rewards must have a leading time axis, got a scalar.')
  for name, x in (('values', values), ('dones', dones)):
    if jnp.shape(x) != shape:
      raise ValueError(f'compute_gae: {name} has shape {jnp.shape(x)}, expected {shape} '
                       '(the shape of rewards, time first).')
  if jnp.shape(last_value) != shape[1:]:
    raise ValueError(f'compute_gae: last_value has shape {jnp.shape(last_value)}, expected '
                     f'{shape[1:]} (rewards without the time axis).')
  valid = jnp.ones(shape, bool) if valid is None else jnp.asarray(valid, bool)
  if valid.shape != shape:
    raise ValueError(f'compute_gae: valid has shape {valid.shape}, expected {shape}.')
  values = jnp.asarray(values, jnp.float32)
  not_done = 1.0 - jnp.asarray(dones, jnp.float32)

  def step(carry, xs):
    next_value, next_adv, next_valid = carry
    r, v, nd, ok = xs
    cont = nd * next_valid
    delta = r + gamma * cont * next_value - v
    # Selects, not products: garbage (even NaN) in invalid slots never leaks out.
    adv = jnp.where(ok, delta + gamma * lam * cont * next_adv, 0.0)
    return (jnp.where(ok, v, 0.0), adv, ok.astype(jnp.float32)), adv

  init = (jnp.asarray(last_value, jnp.float32), jnp.zeros(shape[1:], jnp.float32),
          jnp.ones(shape[1:], jnp.float32))
  _, advantages = jax.lax.scan(step, init, (rewards, values, not_done, valid),
                               reverse=True)
  returns = jnp.where(valid, advantages + values, 0.0)
  return advantages, returns
