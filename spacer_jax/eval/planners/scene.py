"""The SDC and the other objects, read out of a ``SimulatorState`` at the current step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim.datatypes import SimulatorState


def sdc_index(state: SimulatorState) -> jax.Array:
  """Row of the SDC, ``(...)`` int32 (0 when no object is flagged)."""
  return jnp.argmax(state.object_metadata.is_sdc, axis=-1).astype(jnp.int32)


def take_object(values: jax.Array, index: jax.Array, obj_axis: int = -1) -> jax.Array:
  """Row ``index (...)`` of ``values`` along the object axis, kept with size 1.

  ``obj_axis=-1`` for ``(..., N)`` arrays, ``-2`` for ``(..., N, T)``, ``-3`` for
  ``(..., N, S, 3)``.
  """
  shape = index.shape + (1,) + (1,) * (-obj_axis - 1)
  return jnp.take_along_axis(values, index.reshape(shape), axis=values.ndim + obj_axis)


@struct.dataclass
class EgoNow:
  """The SDC at the current step; every field ``(..., 1)``."""

  x: jax.Array
  y: jax.Array
  yaw: jax.Array
  vel_x: jax.Array
  vel_y: jax.Array
  length: jax.Array
  width: jax.Array
  valid: jax.Array

  @property
  def xy(self) -> jax.Array:
    return jnp.stack([self.x, self.y], -1)

  @property
  def speed(self) -> jax.Array:
    return jnp.hypot(self.vel_x, self.vel_y)


def ego_now(state: SimulatorState) -> EgoNow:
  """The SDC's current simulated box, speed and validity."""
  cur = state.current_sim_trajectory
  index = sdc_index(state)
  row = lambda a: take_object(a[..., 0], index)
  return EgoNow(x=row(cur.x), y=row(cur.y), yaw=row(cur.yaw), vel_x=row(cur.vel_x),
                vel_y=row(cur.vel_y), length=row(cur.length), width=row(cur.width),
                valid=row(cur.valid))


def other_objects(state: SimulatorState):
  """Current boxes ``(x, y, yaw, vel_x, vel_y, length, width)`` of every object,
  ``(..., N)`` each, and the mask of valid non-SDC objects ``(..., N)``."""
  cur = state.current_sim_trajectory
  col = lambda a: a[..., 0]
  others = cur.valid[..., 0] & ~state.object_metadata.is_sdc
  return (col(cur.x), col(cur.y), col(cur.yaw), col(cur.vel_x), col(cur.vel_y),
          col(cur.length), col(cur.width)), others
