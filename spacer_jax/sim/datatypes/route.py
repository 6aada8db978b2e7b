"""Candidate routes of the SDC (Waymax's ``Paths``; WOMD 1.3.1+ ``path_samples``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim.datatypes import checks


@struct.dataclass
class Paths:
  """Sampled paths along the lane graph.

  Attributes:
    x, y, z: ``(..., num_paths, num_points_per_path)`` positions in metres. float32.
    ids: ``(..., num_paths, num_points_per_path)`` lane id of each point. int32.
    valid: ``(..., num_paths, num_points_per_path)`` bool.
    arc_length: ``(..., num_paths, num_points_per_path)`` metres from the path's
      first point. float32.
    on_route: ``(..., num_paths, 1)`` whether the path follows the logged route. bool.
  """

  x: jax.Array
  y: jax.Array
  z: jax.Array
  ids: jax.Array
  valid: jax.Array
  arc_length: jax.Array
  on_route: jax.Array

  @property
  def shape(self) -> tuple[int, ...]:
    return tuple(self.x.shape)

  @property
  def num_paths(self) -> int:
    return self.shape[-2]

  @property
  def xy(self) -> jax.Array:
    """``(..., num_paths, num_points_per_path, 2)``."""
    return jnp.stack([self.x, self.y], axis=-1)

  @property
  def xyz(self) -> jax.Array:
    """``(..., num_paths, num_points_per_path, 3)``."""
    return jnp.stack([self.x, self.y, self.z], axis=-1)

  def validate(self) -> None:
    """Checks shapes, dtypes and finiteness; raises ``DataValidationError``."""
    dims = ('num_paths', 'num_points_per_path')
    floats = ('x', 'y', 'z', 'arc_length')
    layout = {n: ('float', dims) for n in floats}
    layout.update(ids=('int', dims), valid=('bool', dims),
                  on_route=('bool', ('num_paths', '1')))
    values = {n: getattr(self, n) for n in layout}
    checks.check_fields('Paths', values, layout)
    checks.check_finite('Paths', values, floats, self.valid)
