"""Object trajectories: poses, velocities, sizes and validity over time.

Same field names, dtypes and conventions as Waymax's ``Trajectory``: every field has
shape ``(..., num_objects, num_timesteps)``; invalid entries hold -1 (floats and ints)
and False (masks); sizes are per object and repeated over time.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim import geometry
from spacer_jax.sim.datatypes import checks

INVALID_FLOAT = -1.0
INVALID_INT = -1

_FLOAT_FIELDS = ('x', 'y', 'z', 'vel_x', 'vel_y', 'yaw', 'length', 'width', 'height')
_DIMS = ('num_objects', 'num_timesteps')


@struct.dataclass
class Trajectory:
  """Per-object state over time.

  Attributes (all shape ``(..., num_objects, num_timesteps)``):
    x, y, z: centre position in metres, world frame. float32.
    vel_x, vel_y: velocity in m/s, world frame. float32.
    yaw: box heading in radians, counter-clockwise from +x, in [-pi, pi). float32.
    valid: whether the object exists and was observed at that step. bool.
    timestamp_micros: time of the step in microseconds. int32.
    length, width, height: box size in metres. float32.
  """

  x: jax.Array
  y: jax.Array
  z: jax.Array
  vel_x: jax.Array
  vel_y: jax.Array
  yaw: jax.Array
  valid: jax.Array
  timestamp_micros: jax.Array
  length: jax.Array
  width: jax.Array
  height: jax.Array

  @property
  def shape(self) -> tuple[int, ...]:
    """``(..., num_objects, num_timesteps)``."""
    return tuple(self.x.shape)

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return self.shape[:-2]

  @property
  def num_objects(self) -> int:
    return self.shape[-2]

  @property
  def num_timesteps(self) -> int:
    return self.shape[-1]

  @property
  def xy(self) -> jax.Array:
    """Positions, ``(..., num_objects, num_timesteps, 2)``."""
    return jnp.stack([self.x, self.y], axis=-1)

  @property
  def xyz(self) -> jax.Array:
    """Positions, ``(..., num_objects, num_timesteps, 3)``."""
    return jnp.stack([self.x, self.y, self.z], axis=-1)

  @property
  def vel_xy(self) -> jax.Array:
    """Velocities, ``(..., num_objects, num_timesteps, 2)``."""
    return jnp.stack([self.vel_x, self.vel_y], axis=-1)

  @property
  def speed(self) -> jax.Array:
    """Norm of the velocity in m/s; -1 where invalid. ``(..., N, T)``."""
    speed = jnp.sqrt(self.vel_x**2 + self.vel_y**2)
    return jnp.where(self.valid, speed, INVALID_FLOAT)

  @property
  def vel_yaw(self) -> jax.Array:
    """Heading of the velocity vector in radians; -1 where invalid. ``(..., N, T)``."""
    return jnp.where(self.valid, jnp.arctan2(self.vel_y, self.vel_x), INVALID_FLOAT)

  @property
  def bbox_corners(self) -> jax.Array:
    """Box corners, ``(..., num_objects, num_timesteps, 4, 2)``.

    Front-right first, then counter-clockwise (front-left, rear-left, rear-right).
    """
    return geometry.box_corners(self.x, self.y, self.length, self.width, self.yaw)

  def stack_fields(self, names: Sequence[str]) -> jax.Array:
    """Stacks the named fields on a new last axis: ``(..., N, T, len(names))``."""
    return jnp.stack([getattr(self, n) for n in names], axis=-1)

  @classmethod
  def zeros(cls, shape: Sequence[int]) -> Trajectory:
    """An all-invalid trajectory of shape ``(..., num_objects, num_timesteps)``."""
    shape = tuple(shape)
    floats = {n: jnp.full(shape, INVALID_FLOAT, jnp.float32) for n in _FLOAT_FIELDS}
    return cls(valid=jnp.zeros(shape, bool),
               timestamp_micros=jnp.full(shape, INVALID_INT, jnp.int32), **floats)

  def fill_invalid(self) -> Trajectory:
    """Returns a copy with invalid entries set to -1, the Waymax convention."""
    floats = {n: jnp.where(self.valid, getattr(self, n), INVALID_FLOAT)
              for n in _FLOAT_FIELDS}
    return self.replace(
        timestamp_micros=jnp.where(self.valid, self.timestamp_micros, INVALID_INT),
        **floats)

  def validate(self) -> None:
    """Checks shapes, dtypes and that valid entries are finite.

    Raises:
      DataValidationError: naming the offending field.
    """
    layout = {n: ('float', _DIMS) for n in _FLOAT_FIELDS}
    layout['valid'] = ('bool', _DIMS)
    layout['timestamp_micros'] = ('int', _DIMS)
    values = {n: getattr(self, n) for n in layout}
    checks.check_fields('Trajectory', values, layout)
    checks.check_finite('Trajectory', values, _FLOAT_FIELDS, self.valid)
