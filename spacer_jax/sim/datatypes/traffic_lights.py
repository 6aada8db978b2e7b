"""Traffic-signal states over time (Waymax's ``TrafficLights``)."""

from __future__ import annotations

import enum

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim.datatypes import checks


class TrafficLightStates(enum.IntEnum):
  """Signal states of WOMD ``traffic_light_state/*/state``."""

  UNKNOWN = 0
  ARROW_STOP = 1
  ARROW_CAUTION = 2
  ARROW_GO = 3
  STOP = 4
  CAUTION = 5
  GO = 6
  FLASHING_STOP = 7
  FLASHING_CAUTION = 8


def is_red(state: jax.Array) -> jax.Array:
  """States that forbid entering the controlled lane (STOP, ARROW_STOP)."""
  return (state == TrafficLightStates.STOP) | (state == TrafficLightStates.ARROW_STOP)


NUM_TRAFFIC_LIGHTS = 16


@struct.dataclass
class TrafficLights:
  """Signals bound to lanes.

  Attributes (all shape ``(..., num_lights, num_timesteps)``; WOMD has 16 lights):
    x, y, z: stop point of the controlled lane, metres. float32.
    state: :class:`TrafficLightStates`. int32.
    lane_ids: id of the lane polyline the signal controls. int32.
    valid: the slot holds a real signal at that step. bool.
  """

  x: jax.Array
  y: jax.Array
  z: jax.Array
  state: jax.Array
  lane_ids: jax.Array
  valid: jax.Array

  @property
  def shape(self) -> tuple[int, ...]:
    return tuple(self.x.shape)

  @property
  def num_traffic_lights(self) -> int:
    return self.shape[-2]

  @property
  def num_timesteps(self) -> int:
    return self.shape[-1]

  @property
  def xy(self) -> jax.Array:
    """``(..., num_lights, num_timesteps, 2)``."""
    return jnp.stack([self.x, self.y], axis=-1)

  def validate(self) -> None:
    """Checks shapes, dtypes and finiteness; raises ``DataValidationError``."""
    dims = ('num_lights', 'num_timesteps')
    layout = {n: ('float', dims) for n in ('x', 'y', 'z')}
    layout.update(state=('int', dims), lane_ids=('int', dims), valid=('bool', dims))
    values = {n: getattr(self, n) for n in layout}
    checks.check_fields('TrafficLights', values, layout)
    checks.check_finite('TrafficLights', values, ('x', 'y', 'z'), self.valid)
