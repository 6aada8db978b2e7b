"""Pytree operations over time-indexed datatypes.

These take a per-batch-element time index ``t`` of shape ``(...)`` (the batch shape)
and work on any pytree whose leaves have shape ``(..., X, num_timesteps)``, so one
implementation serves ``Trajectory`` and ``TrafficLights`` at any batch shape, under
jit and vmap, without Python-side control flow.
"""

from __future__ import annotations

from typing import TypeVar

import jax
import jax.numpy as jnp

PyTree = TypeVar('PyTree')


def _time_index(leaf: jax.Array, t: jax.Array, length: int) -> jax.Array:
  batch_ndim = leaf.ndim - 2
  t = jnp.asarray(t, jnp.int32)
  if t.ndim != batch_ndim:
    raise ValueError(
        f'time index has shape {t.shape}, expected the batch shape '
        f'{leaf.shape[:batch_ndim]} of a field shaped {leaf.shape}.')
  idx = t[..., None, None] + jnp.arange(length, dtype=jnp.int32)
  return jnp.broadcast_to(idx, leaf.shape[:-1] + (length,))


def slice_time(tree: PyTree, t: jax.Array, length: int = 1) -> PyTree:
  """Steps ``[t, t + length)`` of every leaf: ``(..., X, T) -> (..., X, length)``.

  Indices past the end are clamped (as ``lax.dynamic_slice`` would).
  """
  def take(leaf):
    idx = _time_index(leaf, t, length)
    idx = jnp.clip(idx, 0, leaf.shape[-1] - 1)
    return jnp.take_along_axis(leaf, idx, axis=-1)
  return jax.tree_util.tree_map(take, tree)


def update_time(tree: PyTree, t: jax.Array, update: PyTree) -> PyTree:
  """Writes ``update`` (leaves ``(..., X, 1)``) into step ``t`` of every leaf.

  Implemented as a masked select rather than a scatter: on CPU and under vmap this is
  as fast for the small time axis and keeps the update free of index arithmetic.
  """
  def write(leaf, new):
    if new.shape[-1] != 1:
      raise ValueError(f'update must have a time axis of length 1, got {new.shape}.')
    t_arr = jnp.asarray(t, jnp.int32)
    steps = jnp.arange(leaf.shape[-1], dtype=jnp.int32)
    mask = steps == t_arr[..., None, None]
    return jnp.where(mask, new.astype(leaf.dtype), leaf)
  return jax.tree_util.tree_map(write, tree, update)


def select_objects(tree: PyTree, index: jax.Array) -> PyTree:
  """Gathers objects along the object axis (-2 for trajectories, -1 for metadata).

  Args:
    tree: pytree of arrays whose object axis is -2 (``(..., N, T)``).
    index: ``(..., K)`` object indices.

  Returns:
    The tree with leaves ``(..., K, T)``.
  """
  def take(leaf):
    idx = jnp.broadcast_to(index[..., None], index.shape + (leaf.shape[-1],))
    return jnp.take_along_axis(leaf, idx, axis=-2)
  return jax.tree_util.tree_map(take, tree)
