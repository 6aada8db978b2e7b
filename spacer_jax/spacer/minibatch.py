"""PPO minibatches: the stratified split of an episode's agent-steps, and the gradient
of one minibatch computed over its valid rows only.

An episode of ``T`` steps on ``W`` worlds of ``N`` slots holds ``T * N`` agent-step slots
per world, and in generated or WOMD scenes most of them are padding, uncontrolled or
finished agents (a quarter are valid in the ``cpu`` recipe). A minibatch gathered with
static shapes would run the policy's backward pass on every slot. Instead
:func:`minibatch_gradient` packs a minibatch's valid rows to the front and runs fixed-size
chunks of ``chunk_rows`` rows in a loop whose trip count is the number of chunks the
valid rows fill, accumulating gradients. Every term of :func:`ppo_loss` is a mean over the
valid rows, so the chunk losses weighted by their row counts sum to the minibatch loss:
the result equals one pass over the whole minibatch up to the order of floating-point
sums (advantages are normalised over the whole minibatch first).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from spacer_jax.parallel.mesh import DATA_AXIS
from spacer_jax.spacer.losses import LossConfig, PPOBatch, ppo_loss


def minibatch_indices(valid: jax.Array, key: jax.Array, num_minibatches: int
                      ) -> tuple[jax.Array, jax.Array]:
  """Shuffles each world's valid agent-steps and splits them evenly into minibatches.

  Per world, the slots are ordered valid first (randomly among themselves) and
  minibatch ``i`` takes that world's valid entries ``[i V_w / m, (i + 1) V_w / m)``: the
  ``m`` updates of an epoch share every valid agent-step once, however many slots are
  padding or dead agents, and each minibatch draws evenly from every world (a
  stratified shuffle). Being defined per world with a per-world key, the split is the
  same whichever devices hold which worlds, so a world-sharded step gathers only
  local data and trains exactly like the single-device one. A minibatch holds the
  static ``ceil(n / m)`` rows per world; unused rows are masked out.

  Args:
    valid: ``(W, n)`` bool, the agent-step slots of each world that hold data.
    key: PRNG key of the shuffle.
    num_minibatches: ``m``.

  Returns:
    ``(index (m, W, ceil(n / m)) int32, in_minibatch (m, W, ceil(n / m)) bool)``: the
    slots (within each world) of each minibatch and which rows are real; within a
    world the real rows come first.
  """
  w, n = valid.shape
  m = num_minibatches
  if n < m:
    raise ValueError(f'{n} agent-step slots per world cannot be split into {m} '
                     'minibatches.')
  capacity = -(-n // m)

  def one_world(world_valid, world_key):
    order = jnp.argsort(jax.random.uniform(world_key, (n,))
                        + jnp.where(world_valid, 0.0, 2.0))
    count = jnp.sum(world_valid.astype(jnp.int32))
    bounds = (jnp.arange(m + 1, dtype=jnp.int32) * count) // m
    rows = bounds[:-1, None] + jnp.arange(capacity, dtype=jnp.int32)
    return order[jnp.minimum(rows, n - 1)].astype(jnp.int32), rows < bounds[1:, None]

  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(w))
  index, in_minibatch = jax.vmap(one_world)(valid, keys)  # (W, m, capacity)
  return jnp.swapaxes(index, 0, 1), jnp.swapaxes(in_minibatch, 0, 1)


def pack_rows(index: jax.Array, in_minibatch: jax.Array
              ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One minibatch's real rows as a packed list of ``(world, slot)`` pairs.

  Args:
    index: ``(W, c)`` int32 slots of the minibatch in each world.
    in_minibatch: ``(W, c)`` bool, which of them are real.

  Returns:
    ``(world (W * c,) int32, slot (W * c,) int32, count () int32)``: entries
    ``[0, count)`` are the real rows, world-major; the rest repeat valid indices.
  """
  w, c = index.shape
  flat_real = in_minibatch.reshape(-1)
  # A stable sort on "not real" keeps the real rows first and in world order.
  order = jnp.argsort(~flat_real, stable=True).astype(jnp.int32)
  return order // c, index.reshape(-1)[order], jnp.sum(flat_real.astype(jnp.int32))


# Rows per chunk when PPOConfig.chunk_rows = 0. On XLA:CPU small chunks keep the road
# encoder's (rows x 200 x 64) activations in cache: the cpu-recipe SPACER step
# (8 worlds x 32 slots x 20 steps) takes 1.09 s at 32 rows, 1.24 at 64, 1.35 at 128,
# 1.65 at 256, 1.53 at 16 (benchmarks/train_throughput.py --chunk_rows). Accelerators
# want one large chunk per minibatch (the paper's minibatch is 8192 agent-steps).
AUTO_CHUNK_ROWS = {'cpu': 32}
AUTO_CHUNK_ROWS_ACCELERATOR = 8192


def resolve_chunk_rows(chunk_rows: int, backend: Optional[str] = None) -> int:
  """``chunk_rows``, or for 0 the default of ``backend`` (None = JAX's default)."""
  if chunk_rows < 0:
    raise ValueError(f'chunk_rows must be >= 0 (0 = by backend), got {chunk_rows}.')
  if chunk_rows:
    return chunk_rows
  backend = backend or jax.default_backend()
  return AUTO_CHUNK_ROWS.get(backend, AUTO_CHUNK_ROWS_ACCELERATOR)


def _gather_rows(batch: PPOBatch, world: jax.Array, slot: jax.Array) -> PPOBatch:
  return jax.tree_util.tree_map(lambda x: x[world, slot], batch)


def make_minibatch_gradient(apply_fn: Callable, loss_config: LossConfig,
                            chunk_rows: int, mesh: Optional[Mesh] = None
                            ) -> Callable[..., tuple[Any, dict[str, jax.Array]]]:
  """The gradient of :func:`ppo_loss` over one minibatch's real rows, in chunks.

  Returns ``gradient(params, batch, index, in_minibatch, kl_coef) -> (grads, metrics)``
  for the world-major :class:`PPOBatch` ``batch (W, T * N, ...)`` and one minibatch
  ``index, in_minibatch (W, c)`` of :func:`minibatch_indices`; ``grads`` is the
  gradient of the minibatch's loss, ``metrics`` :func:`ppo_loss`'s over its real rows,
  with ``valid_fraction`` the share of its static ``W * c`` rows that are real and
  ``rows`` their number.

  Args:
    apply_fn: ``(params, obs) -> (logits, values)``.
    loss_config: the loss; its advantage normalisation is applied over the whole
      minibatch before chunking.
    chunk_rows: rows per chunk (static; 0 = :func:`resolve_chunk_rows`'s default for
      JAX's default backend); a minibatch wastes less than one chunk on padding.
    mesh: a ``'data'`` mesh: each device packs and runs its own worlds' rows and the
      weighted sums are all-reduced, so N devices give the one-device gradient.
  """
  chunk_rows = resolve_chunk_rows(chunk_rows)
  chunk_config = dataclasses.replace(loss_config, normalize_advantages=False)
  psum = (lambda x: x) if mesh is None else (lambda x: jax.lax.psum(x, DATA_AXIS))

  def chunk_sums(params, batch, world, slot, count, kl_coef):
    """Row-weighted sums of the loss gradient and metrics over ``[0, count)``."""
    def body(c, acc):
      grads_acc, metrics_acc = acc
      rows = c * chunk_rows + jnp.arange(chunk_rows, dtype=jnp.int32)
      real = rows < count
      rows = jnp.minimum(rows, world.shape[0] - 1)
      chunk = _gather_rows(batch, world[rows], slot[rows])
      chunk = chunk.replace(valid=chunk.valid & real)
      n = jnp.sum(chunk.valid.astype(jnp.float32))
      (_, metrics), grads = jax.value_and_grad(
          lambda p: ppo_loss(p, apply_fn, chunk, chunk_config, kl_coef), has_aux=True)(
              params)
      grads_acc = jax.tree_util.tree_map(lambda a, g: a + n * g, grads_acc, grads)
      metrics_acc = jax.tree_util.tree_map(lambda a, v: a + n * v, metrics_acc, metrics)
      return grads_acc, metrics_acc

    grads0 = jax.tree_util.tree_map(jnp.zeros_like, params)
    metrics0 = jax.eval_shape(
        lambda: ppo_loss(params, apply_fn, _gather_rows(batch, world[:1], slot[:1]),
                         chunk_config, kl_coef)[1])
    metrics0 = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), metrics0)
    num_chunks = (count + chunk_rows - 1) // chunk_rows
    return jax.lax.fori_loop(0, num_chunks, body, (grads0, metrics0))

  def local(params, batch, index, in_minibatch, kl_coef):
    world, slot, count = pack_rows(index, in_minibatch)
    real = jnp.arange(world.shape[0]) < count
    if loss_config.normalize_advantages:
      adv = batch.advantages[world, slot]
      n = psum(jnp.sum(real.astype(jnp.float32)))
      mean = psum(jnp.sum(jnp.where(real, adv, 0.0))) / jnp.maximum(n, 1.0)
      var = psum(jnp.sum(jnp.where(real, (adv - mean) ** 2, 0.0))) / jnp.maximum(n, 1.0)
      # Same as normalize_advantages over the minibatch, applied to every slot.
      batch = batch.replace(advantages=(batch.advantages - mean) / (jnp.sqrt(var) + 1e-8))
    grads, sums = chunk_sums(params, batch, world, slot, count, kl_coef)
    rows = psum(count.astype(jnp.float32))
    grads = jax.tree_util.tree_map(lambda g: psum(g) / jnp.maximum(rows, 1.0), grads)
    metrics = {k: psum(v) / jnp.maximum(rows, 1.0) for k, v in sums.items()}
    metrics['valid_fraction'] = rows / psum(jnp.float32(world.shape[0]))
    metrics['rows'] = rows
    return grads, metrics

  if mesh is None:
    return local

  def sharded(params, batch, index, in_minibatch, kl_coef):
    # Every output is all-reduced, hence replicated; the per-device loops may run
    # different trip counts, which is why no collective sits inside them.
    return jax.shard_map(
        local, mesh=mesh, in_specs=(P(), P(DATA_AXIS), P(DATA_AXIS), P(DATA_AXIS), P()),
        out_specs=(P(), P()), check_vma=False)(params, batch, index, in_minibatch,
                                               kl_coef)

  return sharded


__all__ = ['make_minibatch_gradient', 'minibatch_indices', 'pack_rows', 'resolve_chunk_rows']
