"""Per-object metadata: identity, type and role flags (Waymax's ``ObjectMetadata``)."""

from __future__ import annotations

import enum

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim.datatypes import checks


class ObjectType(enum.IntEnum):
  """WOMD object types, as stored in ``ObjectMetadata.object_types``."""

  UNSET = 0
  VEHICLE = 1
  PEDESTRIAN = 2
  CYCLIST = 3
  OTHER = 4


@struct.dataclass
class ObjectMetadata:
  """Static per-object information.

  Attributes (all shape ``(..., num_objects)``):
    ids: WOMD track ids; -1 for padded slots. int32.
    object_types: :class:`ObjectType` values. int32.
    is_sdc: the self-driving car (exactly one per valid scenario). bool.
    is_modeled: ``tracks_to_predict == 1`` in WOMD. bool.
    is_valid: the slot holds a real object (``tracks_to_predict != -1``). bool.
    objects_of_interest: WOMD's interacting-objects flag. bool.
    is_controlled: objects whose actions come from a policy rather than the log. bool.
  """

  ids: jax.Array
  object_types: jax.Array
  is_sdc: jax.Array
  is_modeled: jax.Array
  is_valid: jax.Array
  objects_of_interest: jax.Array
  is_controlled: jax.Array

  @property
  def shape(self) -> tuple[int, ...]:
    return tuple(self.ids.shape)

  @property
  def num_objects(self) -> int:
    return self.shape[-1]

  @property
  def sdc_index(self) -> jax.Array:
    """Index of the SDC per batch element, ``(...)``; 0 if there is none."""
    return jnp.argmax(self.is_sdc, axis=-1)

  def validate(self) -> None:
    """Checks shapes and dtypes; raises ``DataValidationError`` naming the field."""
    dims = ('num_objects',)
    layout = {'ids': ('int', dims), 'object_types': ('int', dims)}
    for name in ('is_sdc', 'is_modeled', 'is_valid', 'objects_of_interest',
                 'is_controlled'):
      layout[name] = ('bool', dims)
    checks.check_fields('ObjectMetadata', {n: getattr(self, n) for n in layout}, layout)
    if checks.is_concrete(self.is_sdc):
      counts = jnp.sum(self.is_sdc, axis=-1)
      if bool(jnp.any(counts > 1)):
        raise checks.DataValidationError(
            'ObjectMetadata.is_sdc marks more than one object as the SDC in a scenario.')
