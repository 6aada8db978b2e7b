"""Map samples (Waymax's ``RoadgraphPoints``) and their type ids."""

from __future__ import annotations

import enum

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim.datatypes import checks


class MapElementIds(enum.IntEnum):
  """Roadgraph point types, as in WOMD's tf.Example ``roadgraph_samples/type``."""

  LANE_UNDEFINED = 0
  LANE_FREEWAY = 1
  LANE_SURFACE_STREET = 2
  LANE_BIKE_LANE = 3
  ROAD_LINE_UNKNOWN = 5
  ROAD_LINE_BROKEN_SINGLE_WHITE = 6
  ROAD_LINE_SOLID_SINGLE_WHITE = 7
  ROAD_LINE_SOLID_DOUBLE_WHITE = 8
  ROAD_LINE_BROKEN_SINGLE_YELLOW = 9
  ROAD_LINE_BROKEN_DOUBLE_YELLOW = 10
  ROAD_LINE_SOLID_SINGLE_YELLOW = 11
  ROAD_LINE_SOLID_DOUBLE_YELLOW = 12
  ROAD_LINE_PASSING_DOUBLE_YELLOW = 13
  ROAD_EDGE_UNKNOWN = 14
  ROAD_EDGE_BOUNDARY = 15
  ROAD_EDGE_MEDIAN = 16
  STOP_SIGN = 17
  CROSSWALK = 18
  SPEED_BUMP = 19
  UNKNOWN = -1


def is_road_edge(types: jax.Array) -> jax.Array:
  """Road edges that bound the drivable area (types 15 and 16), as Waymax counts them."""
  return (types == MapElementIds.ROAD_EDGE_BOUNDARY) | (
      types == MapElementIds.ROAD_EDGE_MEDIAN)


def is_lane(types: jax.Array) -> jax.Array:
  """Lane centre lines (types 0-3)."""
  return (types >= MapElementIds.LANE_UNDEFINED) & (
      types <= MapElementIds.LANE_BIKE_LANE)


def is_road_line(types: jax.Array) -> jax.Array:
  """Painted road lines (types 5-13)."""
  return (types >= MapElementIds.ROAD_LINE_UNKNOWN) & (
      types <= MapElementIds.ROAD_LINE_PASSING_DOUBLE_YELLOW)


_FLOATS = ('x', 'y', 'z', 'dir_x', 'dir_y', 'dir_z')


@struct.dataclass
class RoadgraphPoints:
  """Polyline samples of the map (about 0.5 m apart in WOMD).

  Attributes (all shape ``(..., num_points)``):
    x, y, z: position in metres, world frame. float32.
    dir_x, dir_y, dir_z: unit vector towards the next point of the same polyline
      (zero at a polyline's last point). float32.
    types: :class:`MapElementIds`. int32.
    ids: id of the polyline (map feature) the point belongs to. int32.
    valid: the slot holds a real point. bool.

  Road edges (types 15, 16) are oriented with the drivable road on their left.
  """

  x: jax.Array
  y: jax.Array
  z: jax.Array
  dir_x: jax.Array
  dir_y: jax.Array
  dir_z: jax.Array
  types: jax.Array
  ids: jax.Array
  valid: jax.Array

  @property
  def shape(self) -> tuple[int, ...]:
    return tuple(self.x.shape)

  @property
  def num_points(self) -> int:
    return self.shape[-1]

  @property
  def xy(self) -> jax.Array:
    """``(..., num_points, 2)``."""
    return jnp.stack([self.x, self.y], axis=-1)

  @property
  def xyz(self) -> jax.Array:
    """``(..., num_points, 3)``."""
    return jnp.stack([self.x, self.y, self.z], axis=-1)

  @property
  def dir_xy(self) -> jax.Array:
    """``(..., num_points, 2)``."""
    return jnp.stack([self.dir_x, self.dir_y], axis=-1)

  @property
  def dir_xyz(self) -> jax.Array:
    """``(..., num_points, 3)``."""
    return jnp.stack([self.dir_x, self.dir_y, self.dir_z], axis=-1)

  def validate(self) -> None:
    """Checks shapes, dtypes and finiteness; raises ``DataValidationError``."""
    dims = ('num_points',)
    layout = {n: ('float', dims) for n in _FLOATS}
    layout.update(types=('int', dims), ids=('int', dims), valid=('bool', dims))
    values = {n: getattr(self, n) for n in layout}
    checks.check_fields('RoadgraphPoints', values, layout)
    checks.check_finite('RoadgraphPoints', values, _FLOATS, self.valid)
