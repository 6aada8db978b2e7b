"""Log replay and constant-velocity sim agents."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from spacer_jax.sim.agents.base import SimAgent
from spacer_jax.sim.datatypes import (
    TIMESTEP_SECONDS,
    SimulatorState,
    TrajectoryUpdate,
    slice_time,
)


@dataclasses.dataclass(frozen=True)
class LogReplayAgent(SimAgent):
  """Replays the log: the next pose is the logged one at ``t + 1`` (the expert)."""

  def select_update(self, state: SimulatorState, rng: jax.Array | None = None
                    ) -> TrajectoryUpdate:
    """``TrajectoryUpdate`` ``(..., N, 1)`` from the log, valid where it is logged."""
    del rng
    nxt = slice_time(state.log_trajectory, state.timestep + 1, 1)
    in_range = (state.timestep + 1 < state.log_trajectory.num_timesteps)[..., None, None]
    return TrajectoryUpdate(x=nxt.x, y=nxt.y, yaw=nxt.yaw, vel_x=nxt.vel_x,
                            vel_y=nxt.vel_y, valid=nxt.valid & in_range)


@dataclasses.dataclass(frozen=True)
class ConstantVelocityAgent(SimAgent):
  """Keeps each object's current speed along its current heading (box yaw).

  The velocity is re-aimed along the yaw, so an object whose velocity and heading
  disagree (e.g. a slightly sliding log) drives straight ahead at its speed.

  Attributes:
    dt: step length in seconds.
  """

  dt: float = TIMESTEP_SECONDS

  def select_update(self, state: SimulatorState, rng: jax.Array | None = None
                    ) -> TrajectoryUpdate:
    """``TrajectoryUpdate`` ``(..., N, 1)``, valid where the object is valid now."""
    del rng
    cur = state.current_sim_trajectory
    speed = jnp.sqrt(cur.vel_x**2 + cur.vel_y**2)
    vel_x, vel_y = speed * jnp.cos(cur.yaw), speed * jnp.sin(cur.yaw)
    return TrajectoryUpdate(x=cur.x + vel_x * self.dt, y=cur.y + vel_y * self.dt,
                            yaw=cur.yaw, vel_x=vel_x, vel_y=vel_y, valid=cur.valid)
