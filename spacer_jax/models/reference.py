"""The reference transformer ``p_ref`` (SMART-style next-token model), Flax linen.

One scenario at a time (batch with ``jax.vmap``, see ``spacer_jax.models.api``):

* Map encoder: every map segment is embedded from its shape in its own frame and its
  type, then ``map_layers`` rounds of self-attention among its ``k_map_self`` nearest
  segments, keys carrying their pose relative to the query segment.
* Agent encoder: position ``l`` of agent ``n`` holds token ``l`` (the motion from pose
  ``l`` to pose ``l + 1``) and sits at pose ``l + 1``. Its embedding is the token-id
  embedding of the agent's type + a type embedding + the token's motion and the agent's
  size. Each of ``agent_layers`` layers then runs
  1. temporal causal self-attention over the agent's own positions ``l - W < l' <= l``,
  2. agent->map cross attention to the ``k_map`` nearest segments of its pose at ``l``,
  3. agent->agent attention to the ``k_agent`` nearest other valid agents at the same
     position ``l``,
  each with the keys' poses relative to the agent's pose at ``l`` (its own frame); with
  ``agent_motion_features`` the agent->agent keys also carry their motion over token
  ``l`` relative to the agent's (closing speed).
* Per-type heads map position ``l`` to logits over token ``l + 1``.

Nothing at a position depends on later positions, so one teacher-forced pass gives
every agent's next-token distribution at every step; ``decode_step`` computes one
position at a time from a cache of earlier layer inputs and gives the same numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.models import features as feat
from spacer_jax.models import layers
from spacer_jax.models.config import NUM_MAP_TYPES, ReferenceConfig

if TYPE_CHECKING:
  from spacer_jax.models.api import ReferenceInputs

# Time offsets between positions enter the temporal relative embedding in units of
# 10 tokens (2 s), so they stay O(1) for any window.
_DT_UNITS = 10.0


@struct.dataclass
class DecodeCache:
  """What step-by-step decoding keeps from earlier positions (one scenario).

  Attributes:
    layer_inputs: ``(agent_layers, N, L_max, H)`` each agent layer's input at every
      decoded position (the temporal attention's keys and values come from these).
    poses: ``(N, L_max, 3)`` pose of each decoded position (after its token).
    valid: ``(N, L_max)`` bool, which decoded positions are valid.
  """

  layer_inputs: jax.Array
  poses: jax.Array
  valid: jax.Array


class _Context(NamedTuple):
  """Gather indices, masks and relative embeddings shared by all agent layers."""

  time_index: jax.Array   # (N, Lq, W) history index of each temporal key
  time_mask: jax.Array    # (N, Lq, W)
  time_rel: jax.Array     # (N, Lq, W, R)
  map_index: jax.Array    # (N, Lq, k_map)
  map_mask: jax.Array     # (N, Lq, k_map)
  map_rel: jax.Array      # (N, Lq, k_map, R)
  agent_index: jax.Array  # (Lq, N, k_agent), position-major
  agent_mask: jax.Array   # (Lq, N, k_agent)
  agent_rel: jax.Array    # (Lq, N, k_agent, R)


class _MLP(nn.Module):
  """Dense -> LayerNorm -> ReLU -> Dense."""

  hidden: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = nn.relu(nn.LayerNorm(name='norm')(nn.Dense(self.hidden, name='in')(x)))
    return nn.Dense(self.hidden, name='out')(h)


class ReferenceModel(nn.Module):
  """SMART-style reference model; see the module docstring."""

  config: ReferenceConfig

  def setup(self):
    c = self.config
    block = lambda name: layers.AttentionBlock(c.hidden, c.num_heads, c.ff_multiplier,
                                               c.dropout, name=name)
    self.segment_embed = _MLP(c.hidden)
    self.map_type_embed = nn.Embed(NUM_MAP_TYPES, c.hidden)
    self.map_self_rel = layers.RelativeEmbedding(c.rel_dim, c.position_scale)
    self.map_blocks = [block(f'map_{i}') for i in range(c.map_layers)]
    self.token_embed = layers.TypeEmbedding(c.num_agent_types, c.num_tokens, c.hidden)
    self.agent_type_embed = nn.Embed(c.num_agent_types, c.hidden)
    self.motion_embed = _MLP(c.hidden)
    self.time_rel = layers.RelativeEmbedding(c.rel_dim, c.position_scale)
    self.map_rel = layers.RelativeEmbedding(c.rel_dim, c.position_scale)
    self.agent_rel = layers.RelativeEmbedding(c.rel_dim, c.position_scale)
    self.time_blocks = [block(f'time_{i}') for i in range(c.agent_layers)]
    self.map_cross_blocks = [block(f'agent_map_{i}') for i in range(c.agent_layers)]
    self.agent_blocks = [block(f'agent_agent_{i}') for i in range(c.agent_layers)]
    self.heads = layers.TypeHeads(c.num_agent_types, c.hidden, c.num_tokens)

  # ---------------------------------------------------------------- map encoder
  def encode_map(self, segments: feat.MapSegments, deterministic: bool = True
                 ) -> jax.Array:
    """Map segment embeddings ``(M, H)`` (zero for invalid segments)."""
    c = self.config
    m = segments.valid.shape[-1]
    shape = jnp.concatenate([
        segments.points.reshape(m, -1) / c.position_scale,
        segments.points_valid.astype(jnp.float32),
        segments.length[:, None] / c.position_scale,
    ], axis=-1)
    types = jnp.clip(segments.types + 1, 0, NUM_MAP_TYPES - 1)
    x = self.segment_embed(shape) + self.map_type_embed(types)
    if self.map_blocks:
      pose = segments.pose
      k = min(c.k_map_self, m)
      index, nb_valid = feat.nearest_neighbours(segments.xy, segments.xy, segments.valid, k)
      rel = self.map_self_rel(feat.relative_pose_features(pose[:, None], pose[index]))
      x = x[None]
      for blk in self.map_blocks:
        x = blk(x, x, index[None], nb_valid[None], rel[None], deterministic=deterministic)
      x = x[0]
    return jnp.where(segments.valid[:, None], x, 0.0)

  # -------------------------------------------------------------- agent encoder
  def embed_agents(self, agent_type: jax.Array, agent_size: jax.Array,
                   token_ids: jax.Array, start_pose: jax.Array, end_pose: jax.Array
                   ) -> jax.Array:
    """Layer-0 embeddings ``(N, Lq, H)`` of positions holding ``token_ids (N, Lq)``.

    ``start_pose`` / ``end_pose`` ``(N, Lq, 3)`` are the poses before / after the token.
    """
    c = self.config
    ids = jnp.clip(token_ids, 0, c.num_tokens - 1)
    motion = feat.relative_pose_features(end_pose, start_pose)
    size = jnp.broadcast_to(agent_size[:, None, :] / c.position_scale,
                            (*motion.shape[:-1], 2))
    return (self.token_embed(agent_type[:, None], ids)
            + self.agent_type_embed(agent_type)[:, None]
            + self.motion_embed(jnp.concatenate([motion, size], axis=-1)))

  def _context(self, q_pos: jax.Array, q_pose: jax.Array, q_valid: jax.Array,
               hist_pose: jax.Array, hist_valid: jax.Array,
               segments: feat.MapSegments, q_start: jax.Array) -> _Context:
    """Neighbours and relative embeddings for queries at positions ``q_pos (Lq,)``.

    ``q_pose``/``q_valid`` ``(N, Lq, ...)`` describe the queries (``q_start``: the
    pose before each query's token); ``hist_pose``/``hist_valid`` ``(N, Lh, ...)`` all
    positions the temporal attention may look at.
    """
    c = self.config
    n, lq = q_valid.shape
    lh = hist_valid.shape[1]
    window = lh if c.temporal_window is None else min(c.temporal_window, lh)
    offsets = jnp.arange(window)
    key_pos = q_pos[:, None] - offsets                               # (Lq, W)
    time_index = jnp.clip(key_pos, 0, lh - 1)
    time_mask = (key_pos >= 0)[None] & hist_valid[:, time_index]     # (N, Lq, W)
    dt = jnp.broadcast_to(offsets / _DT_UNITS, (n, lq, window))[..., None]
    time_feat = feat.relative_pose_features(q_pose[:, :, None], hist_pose[:, time_index])
    time_rel = self.time_rel(jnp.concatenate([time_feat, dt], axis=-1))
    time_index = jnp.broadcast_to(time_index, (n, lq, window))

    k_map = min(c.k_map, segments.valid.shape[-1])
    map_index, map_mask = feat.nearest_neighbours(q_pose[..., :2], segments.xy,
                                                  segments.valid, k_map)
    map_rel = self.map_rel(feat.relative_pose_features(q_pose[:, :, None],
                                                       segments.pose[map_index]))

    # Agents at the same position, self excluded; at least one (masked) slot.
    k_agent = max(1, min(c.k_agent, n - 1))
    by_pos = jnp.swapaxes(q_pose, 0, 1)                              # (Lq, N, 3)
    allowed = jnp.swapaxes(q_valid, 0, 1)[:, None, :] & ~jnp.eye(n, dtype=bool)
    agent_index, agent_mask = feat.nearest_neighbours(by_pos[..., :2], by_pos[..., :2],
                                                      allowed, k_agent)
    key_pose = by_pos[jnp.arange(lq)[:, None, None], agent_index]   # (Lq, N, k, 3)
    agent_feat = feat.relative_pose_features(by_pos[:, :, None], key_pose)
    if c.agent_motion_features:
      by_start = jnp.swapaxes(q_start, 0, 1)                          # (Lq, N, 3)
      key_start = by_start[jnp.arange(lq)[:, None, None], agent_index]
      motion = feat.relative_motion_features(by_start[:, :, None], by_pos[:, :, None],
                                             key_start, key_pose)
      agent_feat = jnp.concatenate([agent_feat, motion], axis=-1)
    agent_rel = self.agent_rel(agent_feat)
    return _Context(time_index, time_mask, time_rel, map_index, map_mask, map_rel,
                    agent_index, agent_mask, agent_rel)

  def _agent_layer(self, i: int, x: jax.Array, hist_x: jax.Array, ctx: _Context,
                   map_emb: jax.Array, deterministic: bool) -> jax.Array:
    """Agent layer ``i`` on queries ``x (N, Lq, H)``; ``hist_x (N, Lh, H)`` is the
    layer's input at every history position (queries included)."""
    n, lq, h = x.shape
    # Temporal: one group per agent, keys from its own history.
    x = self.time_blocks[i](x, hist_x, ctx.time_index, ctx.time_mask, ctx.time_rel,
                            deterministic=deterministic)
    # Agent->map: one group, every agent position queries the shared segments.
    flat = lambda a: a.reshape(1, n * lq, *a.shape[2:])
    x = self.map_cross_blocks[i](flat(x), map_emb[None], flat(ctx.map_index),
                                 flat(ctx.map_mask), flat(ctx.map_rel),
                                 deterministic=deterministic).reshape(n, lq, h)
    # Agent->agent: one group per position.
    xt = jnp.swapaxes(x, 0, 1)
    xt = self.agent_blocks[i](xt, xt, ctx.agent_index, ctx.agent_mask, ctx.agent_rel,
                              deterministic=deterministic)
    return jnp.swapaxes(xt, 0, 1)

  # ------------------------------------------------------------------- passes
  def __call__(self, inputs: ReferenceInputs, deterministic: bool = True) -> jax.Array:
    """Teacher-forced logits ``(N, L, K)`` for one scenario (unbatched inputs).

    Output ``l`` scores token ``l + 1`` given every agent's positions ``<= l``.
    Invalid positions get logits too; callers mask them with ``position_valid``.
    """
    segments = inputs.map_segments
    map_emb = self.encode_map(segments, deterministic)
    valid = position_valid(inputs)
    poses = jnp.where(inputs.token_valid[..., None], inputs.token_poses[:, 1:], 0.0)
    starts = jnp.where(inputs.token_valid[..., None], inputs.token_poses[:, :-1], 0.0)
    x = self.embed_agents(inputs.agent_type, inputs.agent_size, inputs.token_ids,
                          starts, poses)
    q_pos = jnp.arange(valid.shape[1])
    ctx = self._context(q_pos, poses, valid, poses, valid, segments, starts)
    if not deterministic and self.config.history_dropout > 0:
      # Some positions lose their own history (the first temporal key is the position
      # itself, which stays): they must predict from the current token and the scene.
      blind = jax.random.bernoulli(self.make_rng('dropout'), self.config.history_dropout,
                                   valid.shape)
      own = jnp.arange(ctx.time_mask.shape[-1]) == 0
      ctx = ctx._replace(time_mask=ctx.time_mask & (own | ~blind[..., None]))
    for i in range(self.config.agent_layers):
      x = self._agent_layer(i, x, x, ctx, map_emb, deterministic)
    return self.heads(x, inputs.agent_type)

  def decode_step(self, map_emb: jax.Array, segments: feat.MapSegments,
                  agent_type: jax.Array, agent_size: jax.Array, cache: DecodeCache,
                  position: jax.Array, token_ids: jax.Array, start_pose: jax.Array,
                  end_pose: jax.Array, valid: jax.Array) -> tuple[jax.Array, DecodeCache]:
    """Logits ``(N, K)`` of the token after ``position`` from one new position.

    Args:
      map_emb: ``encode_map`` output ``(M, H)``.
      segments: the scenario's ``MapSegments`` ``(M,)``.
      agent_type, agent_size: ``(N,)`` and ``(N, 2)``.
      cache: earlier positions (``0 .. position - 1``); ``L_max`` long.
      position: int32 scalar, the index of the new position.
      token_ids: ``(N,)`` token at ``position``.
      start_pose, end_pose: ``(N, 3)`` poses before / after that token.
      valid: ``(N,)`` whether the position is valid (agent validity already folded in).

    Returns:
      ``(logits (N, K), cache)`` with the new position written into the cache.
    """
    start_pose = jnp.where(valid[:, None], start_pose, 0.0)
    end_pose = jnp.where(valid[:, None], end_pose, 0.0)
    cache = cache.replace(poses=cache.poses.at[:, position].set(end_pose),
                          valid=cache.valid.at[:, position].set(valid))
    x = self.embed_agents(agent_type, agent_size, token_ids[:, None], start_pose[:, None],
                          end_pose[:, None])
    ctx = self._context(position[None], end_pose[:, None], valid[:, None], cache.poses,
                        cache.valid, segments, start_pose[:, None])
    layer_inputs = cache.layer_inputs
    for i in range(self.config.agent_layers):
      layer_inputs = layer_inputs.at[i, :, position].set(x[:, 0])
      x = self._agent_layer(i, x, layer_inputs[i], ctx, map_emb, deterministic=True)
    logits = self.heads(x, agent_type)[:, 0]
    return logits, cache.replace(layer_inputs=layer_inputs)


def position_valid(inputs: Any) -> jax.Array:
  """``(..., N, L)``: a position counts when its token and its agent are valid."""
  return inputs.token_valid & inputs.agent_valid[..., None]


def empty_cache(config: ReferenceConfig, num_agents: int, max_len: int) -> DecodeCache:
  """A ``DecodeCache`` for one scenario with nothing decoded yet."""
  return DecodeCache(
      layer_inputs=jnp.zeros((config.agent_layers, num_agents, max_len, config.hidden),
                             jnp.float32),
      poses=jnp.zeros((num_agents, max_len, 3), jnp.float32),
      valid=jnp.zeros((num_agents, max_len), bool))
