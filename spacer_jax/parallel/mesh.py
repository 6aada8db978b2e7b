"""The data-parallel device mesh: worlds sharded over devices, everything else replicated.

One named axis, ``'data'``. A batch of worlds (or scenarios) has its leading axis split
over the devices; parameters, optimizer state, PRNG keys and the frozen reference are
replicated, so the gradients of a loss whose means run over the sharded axis come out
already averaged over devices (the means become all-reduces). A single-device run is
the same code on a 1-device mesh.

Host-to-device helpers (:func:`replicate`, :func:`shard_rows`) build global
``jax.Array`` s that also work when the mesh spans several processes: each process only
ever supplies the rows its own devices hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'


def make_mesh(num_devices: int = 0, devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D ``'data'`` mesh over the first ``num_devices`` devices (0 = all of them).

  Devices are taken in ``jax.devices()`` order, which groups each process's devices
  together, so a process holds a contiguous block of every sharded batch.

  Raises:
    ValueError: ``num_devices`` is negative or more than there are devices, or a
      multi-process run asks for fewer than all devices (every process must hold some).
  """
  devices = list(jax.devices() if devices is None else devices)
  if num_devices < 0 or num_devices > len(devices):
    raise ValueError(f'mesh.num_devices={num_devices}; expected 0 (all) .. {len(devices)} '
                     'available devices.')
  if num_devices and num_devices != len(devices) and jax.process_count() > 1:
    raise ValueError(f'mesh.num_devices={num_devices} in a {jax.process_count()}-process '
                     f'run; a multi-process mesh uses all {len(devices)} devices (set 0).')
  return Mesh(np.array(devices[:num_devices or len(devices)]), (DATA_AXIS,))


def num_shards(mesh: Optional[Mesh]) -> int:
  """Devices along the ``'data'`` axis (1 without a mesh)."""
  return 1 if mesh is None else mesh.shape[DATA_AXIS]


def check_divisible(mesh: Optional[Mesh], **sizes: int) -> None:
  """Raises a ValueError naming each batch size (e.g. ``env.num_worlds=300``) that the
  number of devices does not divide."""
  n = num_shards(mesh)
  bad = [f'{name}={size}' for name, size in sizes.items() if size % n]
  if bad:
    raise ValueError(f'{", ".join(bad)} not divisible by the {n} devices of the data mesh; '
                     'every device must hold the same number of worlds (change the sizes '
                     'or mesh.num_devices).')


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
  """Axis ``axis`` split over ``'data'``, the others whole."""
  return NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA_AXIS))


def constrain(tree: Any, mesh: Optional[Mesh], axis: int = 0) -> Any:
  """``with_sharding_constraint`` splitting axis ``axis`` of every leaf over ``'data'``.

  The identity without a mesh (so jitted code stays usable on one device with no mesh)
  and for leaves with ``axis`` or fewer dimensions. Used inside the train step where the
  partitioner could otherwise choose to replicate the worlds.
  """
  if mesh is None:
    return tree
  sharding = batch_sharding(mesh, axis)
  return jax.tree_util.tree_map(
      lambda x: jax.lax.with_sharding_constraint(x, sharding) if np.ndim(x) > axis else x,
      tree)


def _global(x: Any, sharding: NamedSharding, rows: Optional[np.ndarray] = None,
            size: Optional[int] = None) -> jax.Array:
  """A global array of ``sharding`` from this process's data (see :func:`shard_rows`)."""
  x = np.asarray(x)
  if rows is None:
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  position = {int(r): i for i, r in enumerate(rows)}

  def local(index):
    wanted = range(*index[0].indices(size))
    return x[np.array([position[r] for r in wanted], np.int64)][(slice(None),) + index[1:]]

  return jax.make_array_from_callback((size,) + x.shape[1:], sharding, local)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Host or single-device arrays (the same on every process) -> replicated globals."""
  sharding = replicated(mesh)
  return jax.tree_util.tree_map(lambda x: _global(x, sharding), tree)


def process_rows(size: int, mesh: Mesh) -> np.ndarray:
  """Sorted indices along a batch axis of ``size`` that this process's devices hold when
  the axis is sharded over ``mesh`` (all of them on a single-process mesh)."""
  check_divisible(mesh, batch=size)
  sharding = batch_sharding(mesh)
  rows = set()
  for index in sharding.addressable_devices_indices_map((size,)).values():
    rows.update(range(*index[0].indices(size)))
  return np.array(sorted(rows), np.int64)


def shard_rows(local_tree: Any, rows: np.ndarray, size: int, mesh: Mesh) -> Any:
  """A batch sharded over ``mesh`` from the rows this process holds.

  Args:
    local_tree: pytree whose leaves have leading axis ``len(rows)``: global rows ``rows``
      (from :func:`process_rows`) of a batch of ``size``.
    rows: the global row of each local entry.
    size: the global batch size.
    mesh: the data mesh.

  Returns:
    The same pytree of global ``jax.Array`` s ``(size, ...)``, leading axis sharded.
  """
  rows = np.asarray(rows)
  sharding = batch_sharding(mesh)
  for leaf in jax.tree_util.tree_leaves(local_tree):
    if np.shape(leaf)[:1] != rows.shape:
      raise ValueError(f'shard_rows: a leaf has shape {np.shape(leaf)}; expected leading '
                       f'axis {rows.shape[0]} (one entry per local row).')
  return jax.tree_util.tree_map(lambda x: _global(x, sharding, rows, size), local_tree)


def shard_batch(make_rows: Callable[[list[int]], Any], size: int, mesh: Mesh) -> Any:
  """``make_rows(global_row_ids) -> local batch`` called for this process's rows only,
  assembled into a batch of ``size`` sharded over ``mesh``."""
  rows = process_rows(size, mesh)
  return shard_rows(make_rows([int(r) for r in rows]), rows, size, mesh)


def first_local_rows(tree: Any, count: int = 1) -> Any:
  """The first ``count`` rows this process holds of a batch (sharded along axis 0 or
  replicated), as arrays on one local device: an example for shapes, a video, ... On
  process 0 these are the batch's first rows."""
  def first(x):
    shard = min(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    if shard.data.shape[0] < count:
      raise ValueError(f'first_local_rows: a device holds {shard.data.shape[0]} rows, '
                       f'{count} asked.')
    return shard.data

  shards = jax.tree_util.tree_map(first, tree)
  leaves = jax.tree_util.tree_leaves(shards)
  if not leaves:
    return shards
  # One compiled slice for the whole tree (slicing leaf by leaf compiles once per shape).
  shards = jax.device_put(shards, next(iter(leaves[0].devices())))
  return jax.jit(lambda t: jax.tree_util.tree_map(lambda x: x[:count], t))(shards)


def to_host(tree: Any) -> Any:
  """Numpy copies of replicated (or fully addressable) arrays, on any process."""
  return jax.tree_util.tree_map(np.asarray, tree)


__all__ = ['DATA_AXIS', 'batch_sharding', 'check_divisible', 'constrain', 'first_local_rows',
           'make_mesh', 'num_shards', 'process_rows', 'replicate', 'replicated',
           'shard_batch', 'shard_rows', 'to_host']
