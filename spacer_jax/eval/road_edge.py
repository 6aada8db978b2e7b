"""WOSAC signed distance to road edges (the evaluator's definition, not Waymax's).

The simulator's off-road metric (``sim.metrics.road_edges``) measures to the nearest
road-edge *point* (z weighted x2) and takes the sign from that point's direction. The
WOSAC evaluator measures to the nearest *segment* of the road-edge polylines:

* a query point q (a bottom box corner: z = centre z - height / 2) picks the segment
  with the smallest 3D distance with z stretched x3 (projection parameter from the
  planar coordinates, clipped to the segment); ties go to the lowest segment;
* the result is the planar distance to that segment, signed by which side q lies on:
  ``sign(cross(q - a, b - a))``, positive to the right (off the road). When q projects
  before the segment's start (after its end) and the polyline has a previous (next)
  segment, the sign is the max of both segments' signs at a convex joint and the min at
  a concave one (convex: the second segment turns left);
* polylines whose ends are within 1 m (3D) are closed loops; as in the evaluator, whose
  zero-padding keeps the wrap-around only there, only closed polylines with the most
  points get their first and last segment joined.

Every road-edge type counts (14-16, including unknown). Segments are consecutive
road-edge points of one polyline in roadgraph order. The query uses the simulator's
:class:`RoadEdgeIndex` (built here over the same points) to test only segments that
touch a cell's candidate points. The answer is certified exact when the best stretched
distance is below what any untested segment can reach: its planar distance is at least
``R - e - L_max / 2`` (cell radius R, distance e from q to the cell, longest segment
L_max) and, if it lies within 50 m of the cell's block of cells, its z is within that
block's edge z range (so rollouts whose z drifts off the road surface stay certified).
Uncertified queries are redone by brute force, up to ``max_fallback`` per call; the
rest are counted.
"""


from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim import geometry
from spacer_jax.sim.batching import map_leading_dims
from spacer_jax.sim.datatypes import RoadgraphPoints
from spacer_jax.sim.metrics import road_edges

EDGE_TYPES = (14, 15, 16)  # unknown, boundary, median road edges
Z_STRETCH = 3.0
CYCLIC_TOLERANCE_M2 = 1.0
# Per block of index cells, the z range of the edges within this radius bounds the
# stretched distance of every segment the cell does not list (see _with_index).
Z_RANGE_RADIUS = 50.0
FAR = 1e10


def polyline_ends(point_ok: jax.Array, seg_ok: jax.Array) -> tuple[jax.Array, jax.Array]:
  """First and last slot of the polyline of every slot, ``(M,)`` each.

  ``point_ok``: the slot holds a point; ``seg_ok[s]``: slots s and s+1 are joined.
  """
  m = point_ok.shape[-1]
  s = jnp.arange(m)
  joined_before = jnp.concatenate([jnp.zeros(1, bool), seg_ok[:-1]])
  first = jax.lax.cummax(jnp.where(point_ok & ~joined_before, s, 0))
  last = jax.lax.cummin(jnp.where(point_ok & ~seg_ok, s, m - 1), reverse=True)
  return first, last


@struct.dataclass
class RoadEdgeSegments:
  """Road-edge polylines of one scenario as segments, plus a candidate index.

  Attributes (M = roadgraph size; slot s holds the s-th road-edge point in roadgraph
  order, segment s joins slots s and s+1; row M is a dummy for "no segment"):
    table: ``(..., M + 1, 6)`` float32: segment start ``(x, y, z)`` and vector to its
      end, metres; rows without a segment start at 1e10 (never nearest).
    prev_seg, next_seg: ``(..., M + 1)`` int32 neighbour segment of the same polyline
      (wrapping for closed loops), -1 when none.
    convex_before, convex_after: ``(..., M + 1)`` bool, the joint with the previous
      (next) segment turns left.
    max_segment_length: ``(...)`` float32, longest planar segment length.
    num_segments: ``(...)`` int32.
    index: :class:`road_edges.RoadEdgeIndex` over the same slots.
    block_z: ``(..., B, 2)`` float32, per block of index cells, the z range of the
      edge points within ``Z_RANGE_RADIUS`` of the block (empty: +inf, -inf).
    block_size: static, index cells per block side.
  """

  table: jax.Array
  prev_seg: jax.Array
  next_seg: jax.Array
  convex_before: jax.Array
  convex_after: jax.Array
  max_segment_length: jax.Array
  num_segments: jax.Array
  index: road_edges.RoadEdgeIndex
  block_z: jax.Array
  block_size: int = struct.field(pytree_node=False, default=1)


def _build_edges_single(rg: RoadgraphPoints, index_config) -> RoadEdgeSegments:
  m = rg.x.shape[-1]
  s = jnp.arange(m)
  mask = rg.valid & jnp.isin(rg.types, jnp.array(EDGE_TYPES))
  count = jnp.sum(mask, dtype=jnp.int32)
  slot = jnp.where(mask, jnp.cumsum(mask) - 1, m)
  src = jnp.zeros(m, jnp.int32).at[slot].set(s.astype(jnp.int32), mode='drop')
  point_ok = s < count
  xyz = jnp.stack([rg.x[src], rg.y[src], rg.z[src]], -1)
  ids = rg.ids[src]
  nxt = jnp.minimum(s + 1, m - 1)
  seg_ok = (point_ok & point_ok[nxt] & (ids == ids[nxt]) & (src[nxt] == src + 1)
            & (s < m - 1))
  first, last = polyline_ends(point_ok, seg_ok)
  length = last - first + 1
  max_len = jnp.max(jnp.where(point_ok & (length >= 2), length, 0))
  closed = jnp.sum((xyz[first] - xyz[last]) ** 2, -1) < CYCLIC_TOLERANCE_M2
  cyclic = closed & (length >= 2) & (length == max_len)
  prv = jnp.maximum(s - 1, 0)
  prev_seg = jnp.where(seg_ok[prv] & (s > 0), s - 1,
                       jnp.where(cyclic & (s == first), last - 1, -1))
  next_seg = jnp.where(seg_ok[nxt] & (s < m - 1), s + 1,
                       jnp.where(cyclic & (s + 1 == last), first, -1))
  prev_seg = jnp.where(seg_ok, prev_seg, -1).astype(jnp.int32)
  next_seg = jnp.where(seg_ok, next_seg, -1).astype(jnp.int32)
  vec = xyz[nxt] - xyz
  d = vec[:, :2]
  convex_before = geometry.cross2(d[jnp.maximum(prev_seg, 0)], d) > 0
  convex_after = geometry.cross2(d, d[jnp.maximum(next_seg, 0)]) > 0
  seg_len = jnp.where(seg_ok, jnp.linalg.norm(d, axis=-1), 0.0)
  table = jnp.concatenate([jnp.where(seg_ok[:, None], xyz, FAR),
                           jnp.where(seg_ok[:, None], vec, 0.0)], -1)
  pad = lambda v, fill: jnp.concatenate([v, jnp.full((1,) + v.shape[1:], fill, v.dtype)])
  # The index compacts Waymax's edge types; relabel so it sees exactly our points.
  index_config = road_edges.RoadEdgeIndexConfig() if index_config is None else index_config
  index = road_edges.build_road_edge_index(
      rg.replace(types=jnp.where(mask, 15, -1).astype(rg.types.dtype)), index_config)
  bs = index_config.block_size
  nb = index.grid_size // bs
  block_lo = index.origin + jnp.arange(nb)[:, None] * (bs * index.cell_size)  # (nb, 2)
  gap = lambda lo, hi, v: jnp.maximum(jnp.maximum(lo[:, None] - v, v - hi[:, None]), 0.0)
  gx = gap(block_lo[:, 0], block_lo[:, 0] + bs * index.cell_size[0], xyz[:, 0])
  gy = gap(block_lo[:, 1], block_lo[:, 1] + bs * index.cell_size[1], xyz[:, 1])
  near = (gx[:, None] ** 2 + gy[None] ** 2 < Z_RANGE_RADIUS ** 2) & point_ok  # (nb, nb, M)
  block_z = jnp.stack([jnp.min(jnp.where(near, xyz[:, 2], jnp.inf), -1),
                       jnp.max(jnp.where(near, xyz[:, 2], -jnp.inf), -1)], -1)
  return RoadEdgeSegments(
      table=pad(table, FAR).at[m, 3:].set(0.0), prev_seg=pad(prev_seg, -1),
      next_seg=pad(next_seg, -1), convex_before=pad(convex_before, False),
      convex_after=pad(convex_after, False), max_segment_length=jnp.max(seg_len),
      num_segments=jnp.sum(seg_ok, dtype=jnp.int32), index=index,
      block_z=block_z.reshape(nb * nb, 2), block_size=bs)


def build_road_edge_segments(roadgraph: RoadgraphPoints,
                             index_config: road_edges.RoadEdgeIndexConfig | None = None
                             ) -> RoadEdgeSegments:
  """Segments and candidate index of every scenario of ``roadgraph`` ``(..., P)``."""
  fn = lambda rg: _build_edges_single(rg, index_config)
  return map_leading_dims(fn, roadgraph.x.ndim - 1)(roadgraph)


def _nearest_segment(q: jax.Array, rows: jax.Array):
  """Best segment of ``rows`` (``(Q | 1, C, 6)`` table rows) for queries ``q`` ``(Q, 3)``.

  Returns the candidate position, the stretched and planar distances and the
  projection parameter, each ``(Q,)``. Rows are in slot order, so argmin keeps the
  lowest segment on ties.
  """
  aq = [q[:, i:i + 1] - rows[..., i] for i in range(3)]
  ab = [rows[..., 3 + i] for i in range(3)]
  denom = ab[0] * ab[0] + ab[1] * ab[1]
  dot = aq[0] * ab[0] + aq[1] * ab[1]
  rel = jnp.where(denom > 0, dot / jnp.where(denom > 0, denom, 1.0), 0.0)
  t = jnp.clip(rel, 0.0, 1.0)
  res = [aq[i] - ab[i] * t for i in range(3)]
  d2 = res[0] * res[0] + res[1] * res[1]
  d3 = d2 + (Z_STRETCH * res[2]) ** 2
  best = jnp.argmin(d3, axis=-1)
  pick = lambda v: jnp.take_along_axis(jnp.broadcast_to(v, d3.shape), best[:, None],
                                       axis=-1)[:, 0]
  return best, jnp.sqrt(pick(d3)), jnp.sqrt(pick(d2)), pick(rel)


def _side(q: jax.Array, s: jax.Array, seg: RoadEdgeSegments) -> jax.Array:
  """``sign(cross(q - a_s, b_s - a_s))``: +1 right of segment s, -1 left, ``(Q,)``."""
  row = seg.table[s]
  return jnp.sign(geometry.cross2(q[:, :2] - row[:, :2], row[:, 3:5]))


def _signed(q, s, d2, rel, seg: RoadEdgeSegments) -> jax.Array:
  n = _side(q, s, seg)
  prev_s, next_s = seg.prev_seg[s], seg.next_seg[s]
  n_prev, n_next = _side(q, prev_s, seg), _side(q, next_s, seg)
  before = jnp.where(seg.convex_before[s], jnp.maximum(n, n_prev), jnp.minimum(n, n_prev))
  after = jnp.where(seg.convex_after[s], jnp.maximum(n, n_next), jnp.minimum(n, n_next))
  sign = jnp.where((rel < 0) & (prev_s >= 0), before,
                   jnp.where((rel > 1) & (next_s >= 0), after, n))
  return sign * d2


def _brute_force(q: jax.Array, seg: RoadEdgeSegments) -> jax.Array:
  """Exact answer over every segment (no gathers: the whole table broadcasts)."""
  best, _, d2, rel = _nearest_segment(q, seg.table[None])
  return _signed(q, best, d2, rel, seg)


def _with_index(q: jax.Array, seg: RoadEdgeSegments) -> tuple[jax.Array, jax.Array]:
  """Index answer and its exactness certificate, ``(Q,)`` each."""
  index, g = seg.index, seg.index.grid_size
  m = seg.table.shape[0] - 1
  q_xy = q[:, :2]
  cij = jnp.clip(jnp.floor((q_xy - index.origin) / index.cell_size), 0, g - 1)
  cij = cij.astype(jnp.int32)
  cell = cij[:, 0] * g + cij[:, 1]
  lo = index.origin + cij * index.cell_size
  gap = jnp.maximum(jnp.maximum(lo - q_xy, q_xy - (lo + index.cell_size)), 0.0)
  outside = jnp.linalg.norm(gap, axis=-1)
  cand = index.cell_ids[cell]  # (Q, K), sorted by slot
  cand = jnp.where(jnp.isfinite(index.cell_xyz[cell, 0]), cand, m)
  # Segments ending and starting at each candidate point: slots c-1 and c, interleaved
  # so that the candidate order stays sorted by slot; m is the dummy row.
  starts = jnp.stack([jnp.where((cand > 0) & (cand < m), cand - 1, m), cand], -1)
  starts = starts.reshape(cand.shape[0], -1)
  best, d3, d2, rel = _nearest_segment(q, seg.table[starts])
  s = jnp.take_along_axis(starts, best[:, None], axis=-1)[:, 0]
  # A segment not tested has both end points off the cell's list, so its planar
  # distance is at least `planar`; if it also lies within Z_RANGE_RADIUS of the block
  # its z is in the block's range, else its planar distance is at least `far`.
  planar = jnp.maximum(index.cell_radius[cell] - outside - seg.max_segment_length / 2, 0.0)
  bs, nb = seg.block_size, g // seg.block_size
  blo = index.origin + (cij // bs) * bs * index.cell_size
  bgap = jnp.maximum(jnp.maximum(blo - q_xy, q_xy - (blo + bs * index.cell_size)), 0.0)
  far = Z_RANGE_RADIUS - jnp.linalg.norm(bgap, axis=-1) - seg.max_segment_length
  z_lo, z_hi = seg.block_z[(cij[:, 0] // bs) * nb + cij[:, 1] // bs].T
  dz = jnp.maximum(jnp.maximum(z_lo - q[:, 2], q[:, 2] - z_hi), 0.0)
  bound = jnp.minimum(jnp.sqrt(planar ** 2 + (Z_STRETCH * dz) ** 2), far)
  exact = index.complete & (d3 < bound)
  return _signed(q, s, d2, rel, seg), exact


def refine_road_edge_distances(query_xyz: jax.Array, distance: jax.Array,
                               uncertified: jax.Array, segments: RoadEdgeSegments,
                               max_fallback: int, max_rounds: int = 64
                               ) -> tuple[jax.Array, jax.Array]:
  """Redoes the uncertified queries of one scenario by brute force, ``max_fallback``
  at a time, until none is left or ``max_rounds`` rounds are spent.

  Rollouts that leave the map (queries far outside the index's cells) can leave more
  uncertified corners than one budget holds; the rounds make every answer exact at a
  cost proportional to how many there are (one round when they fit).

  Args:
    query_xyz: ``(Q, 3)``; distance: ``(Q,)`` index answers; uncertified: ``(Q,)`` bool.
    segments: the scenario's :class:`RoadEdgeSegments`.
    max_fallback: static number of brute-force queries per round (``O(M)`` each).
    max_rounds: rounds at most (a bound on the time a pathological input can take).

  Returns:
    ``(distance (Q,), unresolved ())``: NaN distances when the scenario has no road
    edge; ``unresolved`` counts uncertified queries left with the index answer.
  """
  num_q = query_xyz.shape[0]

  def redo(carry):
    dist, left, rounds = carry
    (rows,) = jnp.nonzero(left, size=max_fallback, fill_value=num_q)
    fixed = _brute_force(query_xyz[jnp.minimum(rows, num_q - 1)], segments)
    return (dist.at[rows].set(fixed, mode='drop'), left.at[rows].set(False, mode='drop'),
            rounds + 1)

  more = lambda carry: jnp.any(carry[1]) & (carry[2] < max_rounds)
  distance, left, _ = jax.lax.while_loop(more, redo, (distance, uncertified, jnp.int32(0)))
  unresolved = jnp.sum(left, dtype=jnp.int32)
  has_edges = segments.num_segments > 0
  return (jnp.where(has_edges, distance, jnp.nan),
          jnp.where(has_edges, unresolved, 0))


def indexed_road_edge_distances(query_xyz: jax.Array, segments: RoadEdgeSegments
                                ) -> tuple[jax.Array, jax.Array]:
  """Index answers and certificates for ``(Q, 3)`` queries of one scenario."""
  return _with_index(query_xyz, segments)


def _distance_single(q, valid, seg, max_fallback):
  dist, exact = _with_index(q, seg)
  return refine_road_edge_distances(q, dist, ~exact & valid, seg, max_fallback)


def signed_distance_to_road_edges(query_xyz: jax.Array, segments: RoadEdgeSegments,
                                  max_fallback: int = 64,
                                  query_valid: jax.Array | None = None
                                  ) -> tuple[jax.Array, jax.Array]:
  """WOSAC signed distance (m, positive = off road) of query points to the road edges.

  Args:
    query_xyz: ``(..., Q, 3)`` metres.
    segments: ``(...)`` from :func:`build_road_edge_segments`.
    max_fallback: uncertified queries redone by brute force per round (per scenario and
      call; rounds repeat until none is left, see :func:`refine_road_edge_distances`).
    query_valid: ``(..., Q)`` bool; invalid queries keep the index answer, never use
      the fallback (default: all valid).

  Returns:
    ``(distance (..., Q), unresolved (...))``: NaN distances when the scenario has no
    road-edge segment; ``unresolved`` counts uncertified queries left after the rounds
    (their index answer is kept).
  """
  if query_valid is None:
    query_valid = jnp.ones(query_xyz.shape[:-1], bool)
  fn = lambda q, v, seg: _distance_single(q, v, seg, max_fallback)
  return map_leading_dims(fn, query_xyz.ndim - 2)(query_xyz, query_valid, segments)


def signed_distance_to_road_edges_brute_force(query_xyz: jax.Array,
                                              segments: RoadEdgeSegments) -> jax.Array:
  """Same as :func:`signed_distance_to_road_edges` over every segment (``O(Q M)``)."""
  fn = lambda q, seg: jnp.where(seg.num_segments > 0, _brute_force(q, seg), jnp.nan)
  return map_leading_dims(fn, query_xyz.ndim - 2)(query_xyz, segments)
