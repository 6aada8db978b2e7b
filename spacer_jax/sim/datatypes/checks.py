"""Validation helpers shared by the simulator datatypes.

Every array-carrying dataclass validates itself against an expected layout: each field
has a dtype kind and a shape written in terms of named dimensions (``num_objects``,
``num_timesteps`` ...) that must agree across fields. Errors name the class, the field,
the expected shape and what was found, so bad input from a file or a user is easy to
trace.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np


class DataValidationError(ValueError):
  """A simulator datatype holds a field of the wrong shape, dtype or value."""


# dtype kinds accepted per logical type. Float fields must be float32 (Waymax's
# convention), integer fields int32, masks bool.
_DTYPES = {
    'float': (np.dtype('float32'),),
    'int': (np.dtype('int32'),),
    'bool': (np.dtype('bool'),),
}


def is_concrete(x: Any) -> bool:
  """True when ``x`` holds values (not a tracer inside jit/vmap)."""
  return not isinstance(x, jax.core.Tracer)


def check_fields(
    owner: str,
    values: Mapping[str, Any],
    layout: Mapping[str, tuple[str, Sequence[str]]],
) -> dict[str, int]:
  """Checks the fields of a dataclass against a layout.

  Args:
    owner: class name used in error messages.
    values: field name -> array.
    layout: field name -> (dtype kind, trailing dimension names). Dimension names are
      bound on first use; every later use must agree. Leading dimensions beyond the
      named ones are batch dimensions and must be identical for all fields.

  Returns:
    The bound named dimensions, e.g. ``{'num_objects': 128, 'num_timesteps': 91}``.

  Raises:
    DataValidationError: naming the field, its expected shape and what it holds.
  """
  # Bind each named dimension to the size most fields agree on, so that the error
  # names the odd field out rather than whichever field happened to come first.
  sizes: dict[str, list[int]] = {}
  for name, (_, dim_names) in layout.items():
    arr = values.get(name)
    if arr is None or not hasattr(arr, 'shape') or arr.ndim < len(dim_names):
      continue
    trailing = tuple(arr.shape[arr.ndim - len(dim_names):])
    for dim_name, size in zip(dim_names, trailing):
      sizes.setdefault(dim_name, []).append(size)
  dims = {d: Counter(v).most_common(1)[0][0] for d, v in sizes.items()}
  batch_shape: tuple[int, ...] | None = None
  batch_owner = ''
  for name, (kind, dim_names) in layout.items():
    if name not in values or values[name] is None:
      raise DataValidationError(f'{owner}.{name} is missing.')
    arr = values[name]
    if not hasattr(arr, 'shape') or not hasattr(arr, 'dtype'):
      raise DataValidationError(
          f'{owner}.{name} must be an array, got {type(arr).__name__}.')
    expected_desc = '(..., ' + ', '.join(dim_names) + ')' if dim_names else '(...)'
    if arr.ndim < len(dim_names):
      raise DataValidationError(
          f'{owner}.{name} has shape {tuple(arr.shape)}, expected {expected_desc}.')
    trailing = tuple(arr.shape[arr.ndim - len(dim_names):])
    for dim_name, size in zip(dim_names, trailing):
      expected = int(dim_name) if dim_name.isdigit() else dims[dim_name]
      if size != expected:
        bound = ('' if dim_name.isdigit()
                 else f' with {dim_name}={expected} (as in the other fields)')
        raise DataValidationError(
            f'{owner}.{name} has shape {tuple(arr.shape)}, expected {expected_desc}{bound}.')
    lead = tuple(arr.shape[:arr.ndim - len(dim_names)])
    if batch_shape is None:
      batch_shape, batch_owner = lead, name
    elif lead != batch_shape:
      raise DataValidationError(
          f'{owner}.{name} has batch shape {lead}, but {owner}.{batch_owner} has '
          f'{batch_shape}: all fields must share their leading (batch) dimensions.')
    if np.dtype(arr.dtype) not in _DTYPES[kind]:
      raise DataValidationError(
          f'{owner}.{name} has dtype {np.dtype(arr.dtype)}, expected '
          f'{_DTYPES[kind][0]}.')
  return dims


def check_finite(owner: str, values: Mapping[str, Any], names: Iterable[str],
                 valid: Any) -> None:
  """Raises if a float field holds NaN/inf where ``valid`` is True.

  Skipped silently for traced values (inside jit there is nothing to look at).
  """
  if valid is None or not is_concrete(valid):
    return
  valid_np = np.asarray(valid)
  for name in names:
    arr = values[name]
    if not is_concrete(arr):
      continue
    arr_np = np.asarray(arr)
    mask = np.broadcast_to(valid_np, arr_np.shape) if valid_np.shape != arr_np.shape \
        else valid_np
    bad = ~np.isfinite(arr_np) & mask
    if bad.any():
      index = tuple(int(i) for i in np.argwhere(bad)[0])
      raise DataValidationError(
          f'{owner}.{name} holds a non-finite value ({arr_np[index]}) at index {index} '
          f'where the entry is marked valid.')


def check_batch_shapes(owner: str, parts: Mapping[str, tuple[int, ...]]) -> None:
  """Checks that sub-structures of a container share one batch shape."""
  items = [(k, v) for k, v in parts.items() if v is not None]
  if not items:
    return
  ref_name, ref = items[0]
  for name, shape in items[1:]:
    if shape != ref:
      raise DataValidationError(
          f'{owner}.{name} has batch shape {shape}, but {owner}.{ref_name} has {ref}.')
