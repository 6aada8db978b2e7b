"""Position-delta dynamics: actions are per-step displacements (dx, dy, dyaw).

``DeltaGlobal`` takes (dx, dy) in the world frame, ``DeltaLocal`` in the object's own
frame at the current step (x forward, y left). Both set the velocity to the average
over the step, (dx, dy) / dt in the world frame, and wrap the new yaw.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from spacer_jax.sim import geometry
from spacer_jax.sim.datatypes import (
    TIMESTEP_SECONDS,
    Action,
    ObjectMetadata,
    Trajectory,
    TrajectoryUpdate,
)
from spacer_jax.sim.dynamics import base

MAX_DELTA_XY = 6.0  # m per step (60 m/s at 10 Hz): the inverse clips to this.
MAX_DELTA_YAW = float(jnp.pi)  # rad per step.


@dataclasses.dataclass(frozen=True)
class DeltaGlobal(base.DynamicsModel):
  """Actions ``(dx, dy, dyaw)``: world-frame metres and radians per step.

  Attributes:
    dt: step length in seconds (for the velocity).
  """

  dt: float = TIMESTEP_SECONDS

  def __post_init__(self):
    if self.dt <= 0:
      raise ValueError(f'{type(self).__name__}.dt must be positive, got {self.dt}.')

  @property
  def action_dim(self) -> int:
    return 3

  @property
  def action_bounds(self) -> tuple[jax.Array, jax.Array]:
    high = jnp.asarray([MAX_DELTA_XY, MAX_DELTA_XY, MAX_DELTA_YAW], jnp.float32)
    return -high, high

  def _to_world(self, dxy: jax.Array, yaw: jax.Array) -> jax.Array:
    """Action displacement ``(..., 2)`` -> world frame (identity here)."""
    del yaw
    return dxy

  def _from_world(self, dxy: jax.Array, yaw: jax.Array) -> jax.Array:
    """World displacement ``(..., 2)`` -> action frame (identity here)."""
    del yaw
    return dxy

  def compute_update(self, action: Action, trajectory: Trajectory) -> TrajectoryUpdate:
    """See :meth:`DynamicsModel.compute_update`; ``action.data`` is ``(..., N, 3)``.

    Actions are not clipped (the bounds describe the inverse's range).
    """
    data = base.zero_invalid(action)
    t = trajectory
    dxy = self._to_world(data[..., 0:2], t.yaw)
    dx, dy = dxy[..., 0:1], dxy[..., 1:2]
    return TrajectoryUpdate(
        x=t.x + dx, y=t.y + dy, yaw=geometry.wrap_angle(t.yaw + data[..., 2:3]),
        vel_x=dx / self.dt, vel_y=dy / self.dt, valid=action.valid & t.valid)

  def inverse(self, log_trajectory: Trajectory, metadata: ObjectMetadata,
              timestep: jax.Array) -> Action:
    """See :meth:`DynamicsModel.inverse`: the log's differences, clipped to
    (6 m, 6 m, pi) with dyaw wrapped."""
    del metadata
    current, nxt, valid = base.consecutive_steps(log_trajectory, timestep)
    dxy = jnp.concatenate([nxt.x - current.x, nxt.y - current.y], axis=-1)
    dxy = self._from_world(dxy, current.yaw)
    dyaw = geometry.wrap_angle(nxt.yaw - current.yaw)
    data = jnp.concatenate([dxy, dyaw], axis=-1)
    low, high = self.action_bounds
    data = jnp.clip(data, low, high)
    return Action(data=jnp.where(valid, data, 0.0).astype(jnp.float32), valid=valid)


@dataclasses.dataclass(frozen=True)
class DeltaLocal(DeltaGlobal):
  """Actions ``(dx, dy, dyaw)`` with (dx, dy) in the object's frame at step t."""

  def _to_world(self, dxy: jax.Array, yaw: jax.Array) -> jax.Array:
    return geometry.rotate(dxy, yaw[..., 0])

  def _from_world(self, dxy: jax.Array, yaw: jax.Array) -> jax.Array:
    return geometry.rotate(dxy, -yaw[..., 0])
