"""WOSAC traffic-light (red-light) violations: the evaluator's rule, quirks included.

A valid evaluated object violates a red light at step t when, for a signal on lane l in
state STOP or ARROW_STOP at t, (1) its nearest surface-street lane (type 2) at t is l
and (2) it crossed the signal's stop line between t-1 and t: its projection on the lane
segment nearest the stop point passes from behind the stop point's projection (at t-1,
with the signal's geometry at t-1) to ahead of it (at t). The evaluator's "nearest"
uses ``|(q - a) + clip(t) (b - a)|`` (a plus sign, not the point-to-segment distance),
and its zero-padding adds to every lane but the longest one a segment from its last
point to the origin; both are reproduced so that violations match. A signal absent at
t-1 is taken with stop point (0, 0) there, as the evaluator does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.eval.road_edge import polyline_ends
from spacer_jax.sim.batching import map_leading_dims
from spacer_jax.sim.datatypes import RoadgraphPoints, TrafficLights, is_red

SURFACE_STREET = 2  # the only lane type the red-light rule considers


@struct.dataclass
class StopLines:
  """Surface-street lanes and signal geometry of one scenario for the red-light rule.

  Attributes (P = roadgraph size, S = steps covered, L = signal slots):
    lane_start, lane_end: ``(..., P, 2)`` lane segments as the evaluator builds them.
    lane_valid: ``(..., P)`` bool. lane_id: ``(..., P)`` int32.
    red: ``(..., S, L)`` bool, a STOP/ARROW_STOP signal on a known lane.
    lane: ``(..., S, L)`` int32 controlled lane id.
    origin, axis, stop: ``(..., S, L, 2)``, ``(..., S, L, 2)``, ``(..., S, L)``: the
      lane segment nearest the stop point (start, vector) and the stop point's
      projection parameter on it, at that step.
    prev_origin, prev_axis, prev_stop: the same with the signal's geometry one step
      earlier.
  """

  lane_start: jax.Array
  lane_end: jax.Array
  lane_valid: jax.Array
  lane_id: jax.Array
  red: jax.Array
  lane: jax.Array
  origin: jax.Array
  axis: jax.Array
  stop: jax.Array
  prev_origin: jax.Array
  prev_axis: jax.Array
  prev_stop: jax.Array


def _lane_segments(rg: RoadgraphPoints):
  """Lane segments ``(P,)`` and, per point, the first point of its polyline."""
  p = rg.x.shape[-1]
  s = jnp.arange(p)
  nxt = jnp.minimum(s + 1, p - 1)
  lane = rg.valid & (rg.types == SURFACE_STREET)
  cont = lane & lane[nxt] & (rg.ids == rg.ids[nxt]) & (s < p - 1)
  first, last = polyline_ends(lane, cont)
  length = last - first + 1
  ok = lane & (length >= 2)
  max_len = jnp.max(jnp.where(ok, length, 0))
  # The evaluator's zero padding: a segment from the last point to the origin.
  to_origin = ok & ~cont & (length < max_len)
  start = jnp.stack([rg.x, rg.y], -1)
  end = jnp.where(to_origin[:, None], 0.0, start[nxt])
  return start, end, cont | to_origin, rg.ids, ok & (s == first)


def _quirky_distance(q, start, end):
  """The evaluator's lane "distance" ``|(q - a) + clip(t) (b - a)|``."""
  ab, aq = end - start, q - start
  denom = jnp.sum(ab * ab, -1)
  t = jnp.where(denom > 0, jnp.sum(aq * ab, -1) / jnp.where(denom > 0, denom, 1.0), 0.0)
  return jnp.linalg.norm(aq + ab * jnp.clip(t, 0.0, 1.0)[..., None], axis=-1)


def _projection(q, origin, axis):
  denom = jnp.sum(axis * axis, -1)
  num = jnp.sum((q - origin) * axis, -1)
  return jnp.where(denom > 0, num / jnp.where(denom > 0, denom, 1.0), 0.0)


def _stop_geometry(stop_xy, lane, start, end, valid, lane_id, lane_first,
                   max_lane_points: int):
  """Segment of lane ``lane`` ``(K,)`` nearest each stop point ``(K, 2)``.

  Only the ``max_lane_points`` points from the lane's first one are searched (a
  polyline is contiguous in the roadgraph). Returns the segment start and vector, the
  stop point's projection parameter and whether the lane exists.
  """
  p = start.shape[0]
  key = jnp.where(lane_first, lane_id, jnp.iinfo(jnp.int32).max)
  order = jnp.argsort(key)
  pos = jnp.clip(jnp.searchsorted(key[order], lane), 0, p - 1)
  found = key[order][pos] == lane
  window = jnp.minimum(order[pos][:, None] + jnp.arange(max_lane_points), p - 1)
  on_lane = valid[window] & (lane_id[window] == lane[:, None]) & found[:, None]
  d = _quirky_distance(stop_xy[:, None, :], start[window], end[window])
  j = jnp.take_along_axis(window, jnp.argmin(jnp.where(on_lane, d, jnp.inf), -1)[:, None],
                          -1)[:, 0]
  origin, axis = start[j], end[j] - start[j]
  return origin, axis, _projection(stop_xy, origin, axis), found


def _stop_lines_single(rg: RoadgraphPoints, tl: TrafficLights, first_step: int,
                       max_lane_points: int) -> StopLines:
  start, end, valid, lane_id, lane_first = _lane_segments(rg)
  # Time-major (S + 1, L) signal arrays from first_step - 1 on.
  tl = jax.tree_util.tree_map(lambda v: jnp.swapaxes(v, 0, 1)[first_step - 1:], tl)
  stop_xy = jnp.stack([tl.x, tl.y], -1)
  now_lane, now_valid = tl.lane_ids[1:], tl.valid[1:]
  # The same lane's signal one step earlier (stop point (0, 0) if it was absent).
  match = tl.valid[:-1, None, :] & (tl.lane_ids[:-1, None, :] == now_lane[:, :, None])
  prev_xy = jnp.take_along_axis(stop_xy[:-1], jnp.argmax(match, -1)[..., None], axis=1)
  prev_xy = jnp.where(jnp.any(match, -1)[..., None], prev_xy, 0.0)
  shape = now_lane.shape
  geo = lambda xy: _stop_geometry(xy.reshape(-1, 2), now_lane.reshape(-1), start, end,
                                  valid, lane_id, lane_first, max_lane_points)
  origin, axis, stop, lane_ok = geo(stop_xy[1:])
  p_origin, p_axis, p_stop, _ = geo(prev_xy)
  r = lambda v, extra=(): v.reshape(shape + extra)
  return StopLines(
      lane_start=start, lane_end=end, lane_valid=valid, lane_id=lane_id,
      red=now_valid & is_red(tl.state[1:]) & r(lane_ok), lane=now_lane,
      origin=r(origin, (2,)), axis=r(axis, (2,)), stop=r(stop),
      prev_origin=r(p_origin, (2,)), prev_axis=r(p_axis, (2,)), prev_stop=r(p_stop))


def build_stop_lines(roadgraph: RoadgraphPoints, traffic_lights: TrafficLights,
                     first_step: int, max_lane_points: int = 1024) -> StopLines:
  """Red-light geometry for steps ``first_step ..`` of ``traffic_lights`` ``(..., L, T)``.

  Args:
    roadgraph: ``(..., P)``.
    traffic_lights: ``(..., L, T)``.
    first_step: first step scored, >= 1 (a crossing into t needs the geometry at t-1).
    max_lane_points: longest lane polyline searched for a stop point's segment.
  """
  if first_step < 1:
    raise ValueError(f'build_stop_lines: first_step={first_step}, expected >= 1.')
  fn = lambda rg, tl: _stop_lines_single(rg, tl, first_step, max_lane_points)
  return map_leading_dims(fn, roadgraph.x.ndim - 1)(roadgraph, traffic_lights)


def stop_line_crossings(xy: jax.Array, valid: jax.Array, lines: StopLines) -> jax.Array:
  """Red stop lines crossed between consecutive steps, before the lane check.

  Args:
    xy: ``(K, S + 1, 2)`` centres of K objects from ``first_step - 1`` on (one scenario).
    valid: ``(K, S)`` bool, validity from ``first_step`` on.
    lines: that scenario's :class:`StopLines`.

  Returns:
    ``(K, S, L)`` bool: valid object, red signal, behind the stop point at t-1 and
    ahead of it at t.
  """
  now = _projection(xy[:, 1:, None, :], lines.origin[None], lines.axis[None])
  before = _projection(xy[:, :-1, None, :], lines.prev_origin[None], lines.prev_axis[None])
  crossed = (before < lines.prev_stop[None]) & (now > lines.stop[None])
  return crossed & lines.red[None] & valid[..., None]


def nearest_lane_ids(points: jax.Array, lines: StopLines) -> jax.Array:
  """Id of the lane nearest each point ``(Q, 2)`` by the evaluator's rule; -1: none."""
  ax, ay = lines.lane_start[None, :, 0], lines.lane_start[None, :, 1]
  bx, by = lines.lane_end[None, :, 0] - ax, lines.lane_end[None, :, 1] - ay
  qx, qy = points[:, 0:1] - ax, points[:, 1:2] - ay
  denom = bx * bx + by * by
  t = jnp.where(denom > 0, (qx * bx + qy * by) / jnp.where(denom > 0, denom, 1.0), 0.0)
  t = jnp.clip(t, 0.0, 1.0)
  d2 = (qx + bx * t) ** 2 + (qy + by * t) ** 2  # squared: same argmin
  j = jnp.argmin(jnp.where(lines.lane_valid[None], d2, jnp.inf), axis=-1)
  return jnp.where(jnp.any(lines.lane_valid), lines.lane_id[j], -1)


def _red_light_single(xy, valid, lines: StopLines, max_checks: int):
  cand = stop_line_crossings(xy, valid, lines)  # (K, S, L)
  k, s, num_lights = cand.shape
  flat = jnp.any(cand, -1).reshape(-1)
  (rows,) = jnp.nonzero(flat, size=max_checks, fill_value=k * s)
  rows_c = jnp.minimum(rows, k * s - 1)
  lane_now = nearest_lane_ids(xy[:, 1:].reshape(-1, 2)[rows_c], lines)
  on_lane = cand.reshape(-1, num_lights)[rows_c] & (lines.lane[rows_c % s]
                                                    == lane_now[:, None])
  hit = jnp.any(on_lane, -1)
  out = jnp.zeros(k * s, bool).at[rows].set(hit, mode='drop').reshape(k, s)
  dropped = jnp.maximum(jnp.sum(flat, dtype=jnp.int32) - max_checks, 0)
  return out, dropped


def red_light_violations(xy: jax.Array, valid: jax.Array, lines: StopLines,
                         max_checks: int = 256) -> tuple[jax.Array, jax.Array]:
  """Per-step red-light violations (module docstring) of K objects per scenario.

  Args:
    xy: ``(..., K, S + 1, 2)`` object centres from ``first_step - 1`` on; K may
      flatten rollouts x agents of one scenario.
    valid: ``(..., K, S)`` bool, object validity from ``first_step`` on.
    lines: ``(...)`` from :func:`build_stop_lines` with the same ``first_step``.
    max_checks: stop-line crossings per scenario whose nearest lane is looked up (the
      costly part, ``O(P)`` each); further ones are counted, not checked.

  Returns:
    ``(violation (..., K, S) bool, unchecked (...) int32)``.
  """
  fn = lambda p, v, ln: _red_light_single(p, v, ln, max_checks)
  return map_leading_dims(fn, xy.ndim - 3)(xy, valid, lines)
