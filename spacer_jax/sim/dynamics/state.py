"""State dynamics: the action is the next pose itself, (x, y, yaw, vel_x, vel_y)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from spacer_jax.sim import geometry
from spacer_jax.sim.datatypes import Action, ObjectMetadata, Trajectory, TrajectoryUpdate
from spacer_jax.sim.dynamics import base


@dataclasses.dataclass(frozen=True)
class StateDynamics(base.DynamicsModel):
  """Sets the next (x, y, yaw, vel_x, vel_y) directly: metres, radians, m/s.

  The bounds are unbounded (+-inf): any pose is reachable in one step.
  """

  @property
  def action_dim(self) -> int:
    return 5

  @property
  def action_bounds(self) -> tuple[jax.Array, jax.Array]:
    high = jnp.full(5, jnp.inf, jnp.float32)
    return -high, high

  def compute_update(self, action: Action, trajectory: Trajectory) -> TrajectoryUpdate:
    """See :meth:`DynamicsModel.compute_update`; ``action.data`` is ``(..., N, 5)``."""
    data = base.zero_invalid(action)
    return TrajectoryUpdate(
        x=data[..., 0:1], y=data[..., 1:2], yaw=geometry.wrap_angle(data[..., 2:3]),
        vel_x=data[..., 3:4], vel_y=data[..., 4:5], valid=action.valid & trajectory.valid)

  def inverse(self, log_trajectory: Trajectory, metadata: ObjectMetadata,
              timestep: jax.Array) -> Action:
    """See :meth:`DynamicsModel.inverse`: the logged pose at ``t + 1``, valid where the
    object is logged at both ``t`` and ``t + 1``."""
    del metadata
    _, nxt, valid = base.consecutive_steps(log_trajectory, timestep)
    data = jnp.concatenate([nxt.x, nxt.y, nxt.yaw, nxt.vel_x, nxt.vel_y], axis=-1)
    return Action(data=jnp.where(valid, data, 0.0).astype(jnp.float32), valid=valid)
