"""Building blocks of the reference transformer (Flax linen).

Attention here is always sparse: each query attends to a small fixed set of keys (its k
nearest map segments, its k nearest agents, its last W positions) picked by index, with a
validity mask. Keys and values carry an embedding ``r_ij`` of the key's pose
relative to the query (SMART / QCNet style: ``k_ij = W_k x_j + W_kr r_ij``, likewise for
values), so every attention sees its neighbours in the query's own frame.

The relative terms are computed in factorised form: ``q_i . W_kr r_ij`` as
``(W_kr^T q_i) . r_ij`` and ``sum_j a_ij W_vr r_ij`` as ``W_vr (sum_j a_ij r_ij)``. This is
the same function, but the per-pair cost drops from ``H^2`` to ``heads * H`` per layer,
which is what makes a full teacher-forced pass over 45 positions cheap.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


class RelativeEmbedding(nn.Module):
  """Embeds relative pose features ``(..., F)`` into ``r (..., hidden)``.

  ``r = relu(LN(W f))``: each attention block applies its own linear maps to ``r`` (see
  the module docstring), so a second dense layer here would be redundant.

  The first five features are ``relative_pose_features`` (dx, dy, sin, cos, distance);
  positions and distances are divided by ``position_scale``; further features (such
  as a time offset) pass through unscaled.
  """

  hidden: int
  position_scale: float

  @nn.compact
  def __call__(self, features: jax.Array) -> jax.Array:
    inv = 1.0 / self.position_scale
    scale = jnp.array([inv, inv, 1.0, 1.0, inv], features.dtype)
    extra = features.shape[-1] - scale.shape[0]
    scale = jnp.concatenate([scale, jnp.ones((extra,), features.dtype)])
    h = nn.Dense(self.hidden, name='in')(features * scale)
    return nn.relu(nn.LayerNorm(name='norm')(h))


class FeedForward(nn.Module):
  """Pre-norm residual MLP: ``x + W2 gelu(W1 LN(x))``."""

  hidden: int
  multiplier: int = 4
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    h = nn.LayerNorm(name='norm')(x)
    h = nn.gelu(nn.Dense(self.hidden * self.multiplier, name='up')(h))
    h = nn.Dense(self.hidden, name='down')(h)
    return x + nn.Dropout(self.dropout)(h, deterministic=deterministic)


def masked_softmax(logits: jax.Array, mask: jax.Array) -> jax.Array:
  """Softmax over the last axis restricted to ``mask``; all-masked rows give zeros."""
  logits = jnp.where(mask, logits, -1e30)
  logits = logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
  weights = jnp.where(mask, jnp.exp(logits), 0.0)
  total = jnp.sum(weights, axis=-1, keepdims=True)
  return weights / jnp.where(total > 0, total, 1.0)


class AttentionBlock(nn.Module):
  """Pre-norm multi-head attention over indexed keys, then a feed-forward block.

  Queries and sources come in G independent groups (a scenario, an agent's history, the
  agents at one position); each query attends to the ``k`` sources its ``index`` names.

  Call args:
    x: queries ``(G, Q, H)``.
    source: what keys and values are made from, ``(G, S, H)``.
    index: ``(G, Q, k)`` int, the sources each query attends to; repeats are allowed
      only among masked entries.
    mask: ``(G, Q, k)`` bool, which indexed keys are real.
    rel: optional ``(G, Q, k, R)`` relative pose embedding of each key.

  Returns:
    Updated queries ``(G, Q, H)``. Queries with no valid key only get the feed-forward
    update.

  Query-key scores are computed densely against all S sources and then picked by
  ``index``, and the attention weights are scattered back to a dense ``(Q, S)`` map for
  the value sum: with S in the hundreds this is much cheaper than gathering a
  ``(Q, k, H)`` copy of the keys and values.
  """

  hidden: int
  num_heads: int
  ff_multiplier: int = 4
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, source: jax.Array, index: jax.Array, mask: jax.Array,
               rel: jax.Array | None = None, deterministic: bool = True) -> jax.Array:
    heads, dim = self.num_heads, self.hidden // self.num_heads
    g, num_q, _ = x.shape
    num_s = source.shape[1]
    split = lambda a: a.reshape(*a.shape[:-1], heads, dim)
    q = split(nn.Dense(self.hidden, name='query')(nn.LayerNorm(name='norm_q')(x)))
    src = nn.LayerNorm(name='norm_kv')(source)
    k = split(nn.Dense(self.hidden, name='key')(src))
    v = split(nn.Dense(self.hidden, name='value')(src))
    dense = jnp.einsum('gqhd,gshd->gqhs', q, k)
    logits = jnp.take_along_axis(dense, index[:, :, None, :], axis=-1)   # (G, Q, h, k)
    if rel is not None:
      r_dim = rel.shape[-1]
      w_kr = self.param('key_rel', nn.initializers.lecun_normal(), (r_dim, self.hidden))
      w_vr = self.param('value_rel', nn.initializers.lecun_normal(), (r_dim, self.hidden))
      w_kr = w_kr.reshape(r_dim, heads, dim)
      w_vr = w_vr.reshape(r_dim, heads, dim)
      q_rel = jnp.einsum('gqhd,rhd->gqhr', q, w_kr)
      logits = logits + jnp.einsum('gqhr,gqkr->gqhk', q_rel, rel)
    logits = logits / jnp.sqrt(dim).astype(q.dtype)
    weights = masked_softmax(logits, mask[:, :, None, :])
    weights = nn.Dropout(self.dropout)(weights, deterministic=deterministic)
    gi = jnp.arange(g)[:, None, None, None]
    qi = jnp.arange(num_q)[None, :, None, None]
    hi = jnp.arange(heads)[None, None, :, None]
    dense_w = jnp.zeros((g, num_q, heads, num_s), weights.dtype)
    dense_w = dense_w.at[gi, qi, hi, index[:, :, None, :]].add(weights)
    out = jnp.einsum('gqhs,gshd->gqhd', dense_w, v)
    if rel is not None:
      rel_sum = jnp.einsum('gqhk,gqkr->gqhr', weights, rel)
      out = out + jnp.einsum('gqhr,rhd->gqhd', rel_sum, w_vr)
    out = nn.Dense(self.hidden, name='out')(out.reshape(x.shape))
    x = x + nn.Dropout(self.dropout)(out, deterministic=deterministic)
    return FeedForward(self.hidden, self.ff_multiplier, self.dropout, name='ff')(
        x, deterministic=deterministic)


class TypeEmbedding(nn.Module):
  """Separate embedding tables per agent type: ``(type, id) -> (..., hidden)``."""

  num_types: int
  num_ids: int
  hidden: int

  @nn.compact
  def __call__(self, type_index: jax.Array, ids: jax.Array) -> jax.Array:
    table = self.param('table', nn.initializers.normal(0.02),
                       (self.num_types, self.num_ids, self.hidden))
    return table[type_index, ids]


class TypeHeads(nn.Module):
  """One MLP head per agent type: ``(..., hidden) -> (..., num_outputs)`` logits.

  Each agent uses only its own type's parameters (weights are gathered by type), so a
  pedestrian's logits and gradients never touch the vehicle head.

  Call args:
    x: ``(N, L, hidden)`` features of N agents over L positions.
    type_index: ``(N,)`` int32 in ``[0, num_types)``.
  """

  num_types: int
  hidden: int
  num_outputs: int

  @nn.compact
  def __call__(self, x: jax.Array, type_index: jax.Array) -> jax.Array:
    dense = nn.initializers.lecun_normal()
    # Small output weights: the initial token distribution is close to uniform.
    small = nn.initializers.normal(0.01)
    t, h, k = self.num_types, self.hidden, self.num_outputs
    w_hidden = self.param('hidden_kernel', _stacked(dense, t), (h, h))
    b_hidden = self.param('hidden_bias', nn.initializers.zeros, (t, h))
    w_out = self.param('out_kernel', _stacked(small, t), (h, k))
    b_out = self.param('out_bias', nn.initializers.zeros, (t, k))
    x = nn.LayerNorm(name='norm')(x)
    hid = jnp.einsum('nlh,nhj->nlj', x, w_hidden[type_index]) + b_hidden[type_index][:, None]
    hid = nn.relu(hid)
    return jnp.einsum('nlh,nhk->nlk', hid, w_out[type_index]) + b_out[type_index][:, None]


def _stacked(init: Callable, count: int) -> Callable:
  """An initializer of ``(count, *shape)`` made of ``count`` independent draws."""

  def stacked_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    keys = jax.random.split(key, count)
    return jax.vmap(lambda k: init(k, shape, dtype))(keys)

  return stacked_init
