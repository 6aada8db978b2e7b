"""Token dynamics: the policy picks one motion token per agent, the simulator runs at 10 Hz.

:class:`TokenEnvironment` wraps a :class:`MultiAgentEnvironment`. One policy step takes
a token id per object; each controlled object executes its token from its current
simulated pose (sub-step poses in the world frame, velocity = displacement / 0.1 s) and
the environment advances ``S`` simulator steps with ``step_with_update``, so objects that
are not controlled replay the log and validity follows the environment's rules. The
environment's metrics are computed after every simulator step (10 Hz) and returned
stacked on a sub-step axis.

A ``DynamicsModel`` adapter is deliberately absent: a dynamics model maps one action to
one simulator step, while a token spans ``S`` steps, so the token environment drives
``step_with_update`` itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spacer_jax.sim.datatypes import SimulatorState, TrajectoryUpdate, slice_time
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.sim.metrics.base import MetricResult
from spacer_jax.tokens.tokenize import execute_token, match_tokens, token_corners
from spacer_jax.tokens.vocabulary import TokenVocabulary, agent_type_index


def _pose(trajectory) -> jax.Array:
  """``(..., N, 3)`` (x, y, yaw) of a one-step trajectory ``(..., N, 1)``."""
  return jnp.stack([trajectory.x, trajectory.y, trajectory.yaw], -1)[..., 0, :]


class TokenEnvironment:
  """An environment whose action is one token id per object.

  Stateless like the wrapped environment: every method is a pure function of its
  arguments and can be jitted and vmapped.
  """

  def __init__(self, env: MultiAgentEnvironment, vocab: TokenVocabulary):
    self.env = env
    self.vocab = vocab

  @property
  def steps_per_token(self) -> int:
    """S, simulator steps per policy step."""
    return self.vocab.steps_per_token

  def reset(self, state: SimulatorState, controlled: jax.Array | None = None
            ) -> SimulatorState:
    """The wrapped environment's reset (episode starts at ``init_steps - 1``)."""
    return self.env.reset(state, controlled)

  def execute(self, state: SimulatorState, token_ids: jax.Array
              ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Executes each object's token from its current simulated pose.

    Args:
      state: batch shape ``(...)``.
      token_ids: ``(..., N)`` int; a negative id means no action (the object becomes
        invalid, or keeps constant velocity if the environment's fallback is on).
        Ids ``>= K`` are clipped to ``K - 1``.

    Returns:
      ``(poses (..., N, S, 3), velocities (..., N, S, 2), valid (..., N))``, world
      frame, metres, radians, m/s.
    """
    token_ids = jnp.asarray(token_ids, jnp.int32)
    if token_ids.shape != state.object_metadata.shape:
      raise ValueError(f'token_ids has shape {token_ids.shape}, expected '
                       f'{state.object_metadata.shape} (batch shape + num_objects).')
    current = state.current_sim_trajectory
    type_index = agent_type_index(state.object_metadata.object_types)
    ids = jnp.clip(token_ids, 0, self.vocab.num_tokens - 1)
    poses, velocities = execute_token(self.vocab, _pose(current), type_index, ids)
    return poses, velocities, (token_ids >= 0) & current.valid[..., 0]

  def step(self, state: SimulatorState, token_ids: jax.Array
           ) -> tuple[SimulatorState, dict[str, MetricResult]]:
    """Advances ``S`` simulator steps with one token per object.

    Args:
      state: batch shape ``(...)``, at the token boundary ``timestep``.
      token_ids: ``(..., N)`` int (see :meth:`execute`).

    Returns:
      ``(new_state, metrics)``: the state ``S`` steps later, and each configured
      metric after every sub-step, value and valid ``(..., S, N)``.
    """
    poses, velocities, valid = self.execute(state, token_ids)
    per_step = []
    for s in range(self.steps_per_token):
      update = TrajectoryUpdate(
          x=poses[..., s, 0:1], y=poses[..., s, 1:2], yaw=poses[..., s, 2:3],
          vel_x=velocities[..., s, 0:1], vel_y=velocities[..., s, 1:2],
          valid=valid[..., None])
      state = self.env.step_with_update(state, update)
      per_step.append(self.env.metrics(state))
    metrics = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs, axis=-2), *per_step)
    return state, metrics

  def reward(self, state: SimulatorState, metrics: dict[str, MetricResult]) -> jax.Array:
    """Per-object reward of every sub-step, ``(..., S, N)``, from :meth:`step`'s metrics.

    The wrapped environment's weighted metric sum times the controlled mask; sum over
    the sub-step axis for the reward of the policy step.
    """
    rewards = []
    for s in range(self.steps_per_token):
      at_s = jax.tree_util.tree_map(lambda x, s=s: x[..., s, :], metrics)
      rewards.append(self.env.reward(state, at_s))
    return jnp.stack(rewards, axis=-2)

  def expert_tokens(self, state: SimulatorState) -> tuple[jax.Array, jax.Array]:
    """Tokens that best follow the log from the current *simulated* poses.

    The nearest token (mean corner distance) from each object's simulated pose at
    ``timestep`` to its logged poses at ``timestep + 1 .. timestep + S``, as
    :func:`tokenize` would choose it when rolling forward.

    Returns:
      ``(token_ids (..., N) int32, valid (..., N) bool)``: valid where the object is
      valid now and logged at every sub-step within the log; invalid ids are 0.
    """
    s = self.steps_per_token
    current = state.current_sim_trajectory
    future = slice_time(state.log_trajectory, state.timestep + 1, s)
    target = jnp.stack([future.x, future.y, future.yaw], -1)  # (..., N, S, 3)
    in_range = state.timestep + s < state.log_trajectory.num_timesteps
    valid = current.valid[..., 0] & future.valid.all(-1) & in_range[..., None]
    type_index = agent_type_index(state.object_metadata.object_types)
    length, width = current.length[..., 0], current.width[..., 0]
    corners = token_corners(self.vocab, type_index, length, width)
    ids, _ = match_tokens(corners, _pose(current), target, length, width)
    return jnp.where(valid, ids, 0), valid

  def done(self, state: SimulatorState) -> jax.Array:
    """Episode end, ``(...)``: fewer than ``S`` logged steps remain."""
    return state.timestep + self.steps_per_token >= state.log_trajectory.num_timesteps
