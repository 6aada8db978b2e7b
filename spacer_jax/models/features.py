"""Geometric inputs of the reference model: map segments and relative pose features.

Everything here is jittable with static shapes. Poses are ``(x, y, yaw)`` in metres and
radians, world frame. The model only ever sees positions relative to a query pose, so it
is invariant to where the scene sits and which way it faces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim import geometry
from spacer_jax.sim.datatypes import RoadgraphPoints

NUM_RELATIVE_FEATURES = 5
NUM_MOTION_FEATURES = 4
# Metres per token that relative motion is divided by: 2 m per 0.2 s token is 10 m/s.
MOTION_SCALE = 2.0


def relative_pose_features(query_pose: jax.Array, key_pose: jax.Array) -> jax.Array:
  """Where ``key_pose`` lies as seen from ``query_pose``.

  Args:
    query_pose: ``(..., 3)`` (x, y, yaw), world frame.
    key_pose: ``(..., 3)``, broadcastable against ``query_pose``.

  Returns:
    ``(..., 5)``: dx, dy (metres, key position in the query's frame: +x ahead, +y left),
    sin and cos of the key's heading relative to the query's, and the distance (metres).
  """
  offset = key_pose[..., :2] - query_pose[..., :2]
  local = geometry.rotate(offset, -query_pose[..., 2])
  dyaw = key_pose[..., 2] - query_pose[..., 2]
  dist = jnp.sqrt(jnp.sum(offset**2, axis=-1) + 1e-12)
  return jnp.concatenate(
      [local, jnp.sin(dyaw)[..., None], jnp.cos(dyaw)[..., None], dist[..., None]], axis=-1)


def relative_motion_features(query_start: jax.Array, query_end: jax.Array,
                             key_start: jax.Array, key_end: jax.Array) -> jax.Array:
  """How ``key`` moves relative to ``query`` over their last token (closing speed).

  Relative pose alone says where the car ahead is, not whether it is stopped or pulling
  away; a follower needs the closing speed to brake in time.

  Args:
    query_start, query_end: ``(..., 3)`` (x, y, yaw) before / after the query's token.
    key_start, key_end: ``(..., 3)`` the same for the key, broadcastable.

  Returns:
    ``(..., 4)``, in units of ``MOTION_SCALE`` metres per token: the key's displacement
    minus the query's, in the query's frame (x ahead, y left); the closing speed (the
    rate the distance shrinks, > 0 when approaching); and the closing speed divided by
    the distance in metres over ``MOTION_SCALE`` (an inverse time to contact, in
    tokens^-1; distances below 1 m count as 1 m).
  """
  rel_motion = (key_end[..., :2] - key_start[..., :2]) - (
      query_end[..., :2] - query_start[..., :2])
  local = geometry.rotate(rel_motion, -query_end[..., 2]) / MOTION_SCALE
  offset = key_end[..., :2] - query_end[..., :2]
  dist = jnp.sqrt(jnp.sum(offset**2, axis=-1) + 1e-12)
  closing = -jnp.sum(offset * rel_motion, axis=-1) / jnp.maximum(dist, 1.0)
  inverse_ttc = closing / jnp.maximum(dist, 1.0)
  return jnp.concatenate([local, (closing / MOTION_SCALE)[..., None],
                          inverse_ttc[..., None]], axis=-1)


def nearest_neighbours(query_xy: jax.Array, key_xy: jax.Array, key_valid: jax.Array,
                       k: int) -> tuple[jax.Array, jax.Array]:
  """The ``k`` nearest valid keys of each query.

  Args:
    query_xy: ``(..., Q, 2)`` metres.
    key_xy: ``(..., S, 2)`` metres.
    key_valid: ``(..., Q, S)`` or ``(..., S)``: which keys each query may pick.
    k: neighbours to return; must be at most ``S``.

  Returns:
    ``(indices, valid)``, both ``(..., Q, k)``, nearest first; ``valid`` is False where
    fewer than ``k`` keys were allowed.
  """
  if k > key_xy.shape[-2]:
    raise ValueError(f'asked for {k} neighbours among only {key_xy.shape[-2]} keys')
  diff = query_xy[..., :, None, :] - key_xy[..., None, :, :]
  d2 = jnp.sum(diff**2, axis=-1)
  if key_valid.ndim == d2.ndim - 1:
    key_valid = key_valid[..., None, :]
  d, idx = geometry.smallest_k(jnp.where(key_valid, d2, jnp.inf), k)
  return idx, jnp.isfinite(d)


@struct.dataclass
class MapSegments:
  """Fixed-size map tokens: short pieces of roadgraph polylines.

  Attributes:
    xy: ``(..., M, 2)`` segment position (midpoint of first and last point), metres.
    yaw: ``(..., M)`` heading from the first to the last point, radians.
    start: ``(..., M, 2)`` first point, metres.
    end: ``(..., M, 2)`` last point, metres.
    length: ``(..., M)`` arc length, metres.
    types: ``(..., M)`` roadgraph type id (``MapElementIds``) of the polyline, int32;
      -1 for invalid slots.
    points: ``(..., M, P, 2)`` the segment's points in its own frame (origin ``xy``,
      +x along ``yaw``), zero where ``points_valid`` is False. ``P = segment_step + 1``.
    points_valid: ``(..., M, P)`` bool.
    valid: ``(..., M)`` bool, the slot holds a segment.
  """

  xy: jax.Array
  yaw: jax.Array
  start: jax.Array
  end: jax.Array
  length: jax.Array
  types: jax.Array
  points: jax.Array
  points_valid: jax.Array
  valid: jax.Array

  @property
  def pose(self) -> jax.Array:
    """``(..., M, 3)`` (x, y, yaw)."""
    return jnp.concatenate([self.xy, self.yaw[..., None]], axis=-1)

  @property
  def num_segments(self) -> int:
    return self.valid.shape[-1]


def _segments_unbatched(rg: RoadgraphPoints, anchor_xy: jax.Array, anchor_valid: jax.Array,
                        num_segments: int, segment_step: int) -> MapSegments:
  num_points = rg.x.shape[-1]
  idx = jnp.arange(num_points)
  valid = rg.valid
  xy = rg.xy
  # A run is a maximal stretch of consecutive valid points with one polyline id.
  prev_valid = jnp.concatenate([jnp.zeros((1,), bool), valid[:-1]])
  prev_ids = jnp.concatenate([rg.ids[:1], rg.ids[:-1]])
  run_start = valid & (~prev_valid | (rg.ids != prev_ids))
  run_first = jax.lax.cummax(jnp.where(run_start, idx, 0))
  run_id = jnp.cumsum(run_start)
  pos_in_run = idx - run_first
  continues = jnp.concatenate([valid[1:] & ~run_start[1:], jnp.zeros((1,), bool)])
  # Segments start every `segment_step` points of a run and share end points with the
  # next one; a run's last point starts no segment of its own unless it is the whole run
  # (single-point features such as stop signs).
  is_start = valid & (pos_in_run % segment_step == 0) & (continues | run_start)

  offsets = jnp.arange(segment_step + 1)
  raw = idx[:, None] + offsets
  pidx = jnp.minimum(raw, num_points - 1)
  pvalid = (raw < num_points) & valid[pidx] & (run_id[pidx] == run_id[:, None])
  pvalid = pvalid & is_start[:, None]
  # Squared distance of every point to its nearest anchor (A is small: the scene's
  # agents), then of every segment's nearest point.
  d2 = jnp.sum((xy[:, None, :] - anchor_xy[None, :, :]) ** 2, axis=-1)   # (P, A)
  anchor_dist = jnp.min(jnp.where(anchor_valid[None, :], d2, jnp.inf), axis=-1)
  # No valid anchor: fall back to the origin so the ranking is still defined.
  anchor_dist = jnp.where(jnp.any(anchor_valid), anchor_dist, jnp.sum(xy**2, axis=-1))
  seg_dist = jnp.min(jnp.where(pvalid, anchor_dist[pidx], jnp.inf), axis=-1)

  k = min(num_segments, num_points)
  nearest, sel = geometry.smallest_k(seg_dist, k)
  seg_valid = jnp.isfinite(nearest)
  if k < num_segments:  # fewer roadgraph slots than segments: pad with invalid slots
    pad = num_segments - k
    sel = jnp.concatenate([sel, jnp.zeros((pad,), sel.dtype)])
    seg_valid = jnp.concatenate([seg_valid, jnp.zeros((pad,), bool)])

  points_idx = pidx[sel]
  points_valid = pvalid[sel] & seg_valid[:, None]
  pts = xy[points_idx]
  count = jnp.sum(points_valid, axis=-1)
  start = pts[:, 0]
  end = jnp.take_along_axis(pts, jnp.maximum(count - 1, 0)[:, None, None], axis=1)[:, 0]
  step_len = jnp.linalg.norm(pts[:, 1:] - pts[:, :-1], axis=-1)
  length = jnp.sum(jnp.where(points_valid[:, 1:], step_len, 0.0), axis=-1)
  chord = end - start
  chord_len = jnp.linalg.norm(chord, axis=-1)
  first = sel
  dir_yaw = jnp.arctan2(rg.dir_y[first], rg.dir_x[first])
  # Single points (or degenerate pieces) take their heading from the roadgraph `dir`.
  yaw = jnp.where(chord_len > 1e-3, jnp.arctan2(chord[:, 1], chord[:, 0]), dir_yaw)
  center = 0.5 * (start + end)
  local = geometry.world_to_local(pts, center[:, None, :], yaw[:, None])

  zero2 = jnp.zeros_like(center)
  return MapSegments(
      xy=jnp.where(seg_valid[:, None], center, zero2),
      yaw=jnp.where(seg_valid, yaw, 0.0),
      start=jnp.where(seg_valid[:, None], start, zero2),
      end=jnp.where(seg_valid[:, None], end, zero2),
      length=jnp.where(seg_valid, length, 0.0),
      types=jnp.where(seg_valid, rg.types[first], -1).astype(jnp.int32),
      points=jnp.where(points_valid[..., None], local, 0.0),
      points_valid=points_valid,
      valid=seg_valid,
  )


def map_segments(roadgraph: RoadgraphPoints, anchor_xy: jax.Array, num_segments: int,
                 segment_step: int = 10, anchor_valid: jax.Array | None = None
                 ) -> MapSegments:
  """Chops roadgraph polylines into segments and keeps the ``num_segments`` nearest.

  A polyline (consecutive valid points with the same ``ids``) is cut every
  ``segment_step`` points (5 m at WOMD's 0.5 m spacing); consecutive segments share their
  end point. Segments are ranked by the distance of their nearest point to the nearest
  valid anchor (the scene's agents, so that every agent has the map around it, not only
  the SDC); slots beyond the available segments are invalid. With ``num_segments`` at
  least the number of segments in the roadgraph the whole map is kept.

  Args:
    roadgraph: ``RoadgraphPoints`` with batch shape ``(...)``, points in polyline order.
    anchor_xy: ``(..., A, 2)`` anchor positions, metres, or ``(..., 2)`` for one centre.
    num_segments: M.
    segment_step: points from a segment's first to its last point.
    anchor_valid: ``(..., A)`` bool, which anchors count (default all).

  Returns:
    ``MapSegments`` with shape ``(..., M)``.
  """
  batch = roadgraph.x.shape[:-1]
  anchor_xy = jnp.asarray(anchor_xy, jnp.float32)
  if anchor_xy.shape == (*batch, 2):
    anchor_xy = anchor_xy[..., None, :]
  if anchor_xy.ndim != len(batch) + 2 or anchor_xy.shape[:-2] != batch or (
      anchor_xy.shape[-1] != 2):
    raise ValueError(f'anchor_xy (center_xy) has shape {anchor_xy.shape}, expected '
                     f'{(*batch, 2)} or {(*batch, "A", 2)} to match the roadgraph batch '
                     f'shape {batch}')
  if anchor_valid is None:
    anchor_valid = jnp.ones(anchor_xy.shape[:-1], bool)
  if tuple(anchor_valid.shape) != anchor_xy.shape[:-1]:
    raise ValueError(f'anchor_valid has shape {anchor_valid.shape}, expected '
                     f'{anchor_xy.shape[:-1]} like anchor_xy without its last axis')
  if segment_step < 1 or num_segments < 1:
    raise ValueError(f'segment_step ({segment_step}) and num_segments ({num_segments}) '
                     f'must be >= 1')
  fn = lambda rg, a, ok: _segments_unbatched(rg, a, ok, num_segments, segment_step)
  for _ in batch:
    fn = jax.vmap(fn)
  return fn(roadgraph, anchor_xy, jnp.asarray(anchor_valid, bool))
