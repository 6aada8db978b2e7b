"""Closed-loop rollouts with ``lax.scan``.

An *actor* is any function ``(state, rng) -> Action | TrajectoryUpdate``: a learned
policy through the environment's dynamics model (``Action``), or a scripted sim agent
that proposes next poses directly (``TrajectoryUpdate``). The rollout computes the
metrics once per step and derives the reward from them.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim.datatypes import Action, SimulatorState, TrajectoryUpdate
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.sim.metrics.base import MetricResult

Actor = Callable[[SimulatorState, jax.Array], Action | TrajectoryUpdate]


@struct.dataclass
class RolloutOutput:
  """Result of :func:`rollout`; per-step outputs are time-major.

  Attributes:
    final_state: the state after the last step; its ``sim_trajectory`` holds the whole
      simulated episode ``(..., num_objects, num_timesteps)``.
    reward: ``(num_steps, ..., num_objects)`` reward of each state reached.
    metrics: name -> :class:`MetricResult` with ``(num_steps, ..., num_objects)``.
  """

  final_state: SimulatorState
  reward: jax.Array
  metrics: dict[str, MetricResult]


def default_num_steps(env: MultiAgentEnvironment, state: SimulatorState) -> int:
  """Steps from ``init_steps - 1`` to the end of the log (80 for WOMD)."""
  return state.log_trajectory.num_timesteps - env.config.init_steps


def step_actor(env: MultiAgentEnvironment, state: SimulatorState, actor: Actor,
               rng: jax.Array) -> SimulatorState:
  """One closed-loop step with ``actor``."""
  out = actor(state, rng)
  if isinstance(out, TrajectoryUpdate):
    return env.step_with_update(state, out)
  return env.step(state, out)


def rollout(env: MultiAgentEnvironment, state: SimulatorState, actor: Actor,
            rng: jax.Array, num_steps: int | None = None,
            compute_metrics: bool = True) -> RolloutOutput:
  """Runs ``num_steps`` closed-loop steps from a reset ``state``.

  Args:
    env: the environment (static).
    state: a state returned by ``env.reset`` (any batch shape).
    actor: ``(state, rng) -> Action | TrajectoryUpdate``.
    rng: PRNG key; step ``i`` uses ``fold_in(rng, i)``.
    num_steps: defaults to the rest of the log.
    compute_metrics: when False only the trajectory is produced (fastest).

  Returns:
    A :class:`RolloutOutput`.
  """
  if num_steps is None:
    num_steps = default_num_steps(env, state)

  def body(carry, i):
    with jax.named_scope('sim_step'):
      next_state = step_actor(env, carry, actor, jax.random.fold_in(rng, i))
    if not compute_metrics:
      return next_state, None
    with jax.named_scope('sim_metrics'):
      metrics = env.metrics(next_state)
      reward = env.reward(next_state, metrics)
    return next_state, (reward, metrics)

  final, per_step = jax.lax.scan(body, state, jnp.arange(num_steps))
  if per_step is None:
    return RolloutOutput(final_state=final, reward=jnp.zeros((0,)), metrics={})
  reward, metrics = per_step
  return RolloutOutput(final_state=final, reward=reward, metrics=metrics)
