"""Actions and per-step trajectory updates (Waymax's ``Action`` / ``TrajectoryUpdate``).

A dynamics model turns an :class:`Action` (model-specific numbers per object) into a
:class:`TrajectoryUpdate` (the next pose and velocity per object). Sim agents and
policies of different kinds meet in ``TrajectoryUpdate``: it is the common currency
that the environment writes into the simulated trajectory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim.datatypes import checks


@struct.dataclass
class Action:
  """Model-specific action per object.

  Attributes:
    data: ``(..., num_objects, action_dim)`` float32, e.g. (acceleration, curvature)
      for the bicycle model.
    valid: ``(..., num_objects, 1)`` bool; an object with an invalid action becomes
      invalid at the next step (or keeps constant velocity, if the model's fallback is
      on).
  """

  data: jax.Array
  valid: jax.Array

  @property
  def shape(self) -> tuple[int, ...]:
    """``(..., num_objects)``."""
    return tuple(self.data.shape[:-1])

  def validate(self) -> None:
    layout = {'data': ('float', ('num_objects', 'action_dim')),
              'valid': ('bool', ('num_objects', '1'))}
    checks.check_fields('Action', {'data': self.data, 'valid': self.valid}, layout)
    checks.check_finite('Action', {'data': self.data}, ('data',),
                        None if self.valid is None else self.valid)


@struct.dataclass
class TrajectoryUpdate:
  """Next-step pose and velocity per object.

  Attributes (all shape ``(..., num_objects, 1)``):
    x, y: position in metres. float32.
    yaw: heading in radians. float32.
    vel_x, vel_y: velocity in m/s. float32.
    valid: whether the object exists after the update. bool.
  """

  x: jax.Array
  y: jax.Array
  yaw: jax.Array
  vel_x: jax.Array
  vel_y: jax.Array
  valid: jax.Array

  @property
  def shape(self) -> tuple[int, ...]:
    """``(..., num_objects, 1)``."""
    return tuple(self.x.shape)

  def as_action(self) -> Action:
    """The update as a 5-d action ``(x, y, yaw, vel_x, vel_y)`` for ``StateDynamics``."""
    data = jnp.concatenate([self.x, self.y, self.yaw, self.vel_x, self.vel_y], axis=-1)
    return Action(data=data, valid=self.valid)

  def validate(self) -> None:
    dims = ('num_objects', '1')
    layout = {n: ('float', dims) for n in ('x', 'y', 'yaw', 'vel_x', 'vel_y')}
    layout['valid'] = ('bool', dims)
    values = {n: getattr(self, n) for n in layout}
    checks.check_fields('TrajectoryUpdate', values, layout)
    checks.check_finite('TrajectoryUpdate', values, ('x', 'y', 'yaw', 'vel_x', 'vel_y'),
                        self.valid)


def merge_updates(first: TrajectoryUpdate, second: TrajectoryUpdate,
                  use_second: jax.Array) -> TrajectoryUpdate:
  """Per object, takes ``second`` where ``use_second`` ``(..., num_objects)`` is True."""
  mask = use_second[..., None]
  return jax.tree_util.tree_map(lambda a, b: jnp.where(mask, b, a), first, second)
