"""Waymax's invertible kinematic bicycle model: (acceleration, curvature) actions.

Forward, with speed ``v = |vel|`` and step ``dt``::

  x'   = x + vel_x dt + a cos(yaw) dt^2 / 2
  y'   = y + vel_y dt + a sin(yaw) dt^2 / 2
  yaw' = wrap(yaw + k (v dt + a dt^2 / 2))
  v'   = v + a dt                      (not clamped: may go negative)
  vel' = v' (cos yaw', sin yaw')

The inverse reads the acceleration from the change of speed and the curvature from the
change of heading over the distance travelled; below 0.6 m/s the velocity heading is
noise, so the curvature is 0 there and the logged box yaw stands in for it.
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

MAX_ACCEL = 6.0  # m/s^2, bound of the acceleration action.
MAX_CURVATURE = 0.3  # 1/m, bound of the curvature action.
# Below this speed (m/s) the heading of the velocity is unreliable: the inverse then
# uses the box yaw as the target heading and sets the curvature to 0.
SPEED_LIMIT_FOR_HEADING = 0.6


def bicycle_inverse(current: Trajectory, nxt: Trajectory, valid: jax.Array,
                    dt: float = TIMESTEP_SECONDS) -> tuple[jax.Array, jax.Array]:
  """Raw (unnormalised, unclipped) bicycle actions between two steps.

  Args:
    current: the step ``t``, fields ``(..., N, 1)``.
    nxt: the step ``t + 1``, fields ``(..., N, 1)``.
    valid: bool ``(..., N, 1)``; where False both outputs are 0.
    dt: step length in seconds.

  Returns:
    ``(accel, curvature)``, each ``(..., N, 1)`` float32: m/s^2 and 1/m.
  """
  speed0 = jnp.sqrt(current.vel_x**2 + current.vel_y**2)
  speed1 = jnp.sqrt(nxt.vel_x**2 + nxt.vel_y**2)
  accel = (speed1 - speed0) / dt
  target_yaw = jnp.where(speed1 <= SPEED_LIMIT_FOR_HEADING, nxt.yaw,
                         jnp.arctan2(nxt.vel_y, nxt.vel_x))
  # Distance travelled in the step; equals dt (v0 + v1) / 2, so it is >= 0.06 m
  # wherever both speeds pass the threshold and the curvature is actually used.
  distance = speed0 * dt + 0.5 * accel * dt**2
  moving = (speed0 >= SPEED_LIMIT_FOR_HEADING) & (speed1 >= SPEED_LIMIT_FOR_HEADING)
  safe_distance = jnp.where(moving, distance, 1.0)
  curvature = jnp.where(
      moving, geometry.wrap_angle(target_yaw - current.yaw) / safe_distance, 0.0)
  accel = jnp.where(valid, accel, 0.0)
  curvature = jnp.where(valid, curvature, 0.0)
  return accel.astype(jnp.float32), curvature.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class InvertibleBicycleModel(base.DynamicsModel):
  """Kinematic bicycle with (acceleration m/s^2, curvature 1/m) actions.

  Attributes:
    normalize_actions: actions live in [-1, 1]^2; they are clipped to that box and then
      scaled by (6 m/s^2, 0.3 1/m). Without it actions are physical and not clipped
      (as in Waymax), and the bounds only describe the intended action space.
    dt: step length in seconds.
  """

  normalize_actions: bool = False
  dt: float = TIMESTEP_SECONDS

  def __post_init__(self):
    if self.dt <= 0:
      raise ValueError(f'InvertibleBicycleModel.dt must be positive, got {self.dt}.')

  @property
  def action_dim(self) -> int:
    return 2

  @property
  def _scale(self) -> jax.Array:
    return jnp.asarray([MAX_ACCEL, MAX_CURVATURE], jnp.float32)

  @property
  def action_bounds(self) -> tuple[jax.Array, jax.Array]:
    high = jnp.ones(2, jnp.float32) if self.normalize_actions else self._scale
    return -high, high

  def compute_update(self, action: Action, trajectory: Trajectory) -> TrajectoryUpdate:
    """See :meth:`DynamicsModel.compute_update`; ``action.data`` is ``(..., N, 2)``."""
    data = base.zero_invalid(action)
    if self.normalize_actions:
      data = jnp.clip(data, -1.0, 1.0) * self._scale
    accel, curvature = data[..., 0:1], data[..., 1:2]
    dt = self.dt
    t = trajectory
    speed = jnp.sqrt(t.vel_x**2 + t.vel_y**2)
    x = t.x + t.vel_x * dt + 0.5 * accel * jnp.cos(t.yaw) * dt**2
    y = t.y + t.vel_y * dt + 0.5 * accel * jnp.sin(t.yaw) * dt**2
    yaw = geometry.wrap_angle(t.yaw + curvature * (speed * dt + 0.5 * accel * dt**2))
    new_speed = speed + accel * dt
    return TrajectoryUpdate(
        x=x, y=y, yaw=yaw, vel_x=new_speed * jnp.cos(yaw), vel_y=new_speed * jnp.sin(yaw),
        valid=action.valid & t.valid)

  def inverse(self, log_trajectory: Trajectory, metadata: ObjectMetadata,
              timestep: jax.Array) -> Action:
    """See :meth:`DynamicsModel.inverse`. Normalised actions are divided by the bounds
    but not clipped, so out-of-range expert actions stay visible."""
    del metadata
    current, nxt, valid = base.consecutive_steps(log_trajectory, timestep)
    accel, curvature = bicycle_inverse(current, nxt, valid, self.dt)
    data = jnp.concatenate([accel, curvature], axis=-1)
    if self.normalize_actions:
      data = data / self._scale
    return Action(data=data, valid=valid)
