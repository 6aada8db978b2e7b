"""nuPlan's time to collision and driving-direction terms of the planner score.

Both are per-step quantities of the ego's simulated episode that
:func:`spacer_jax.eval.planner_metrics.score_ego_episode` reduces to a sub-score.

**Time to collision** (:func:`ego_time_to_collision`, nuPlan's
``time_to_collision_within_bound``): at each step the ego and every other valid object
are extrapolated at their current velocity (displacement over the last step) and fixed
heading for ``ttc_horizon`` seconds in steps of ``ttc_time_step``; the ego's TTC is the
first extrapolation time at which its box overlaps an object that is *in its path*:
ahead of the ego (centre in front of the ego's rear axle line, i.e. positive along its
heading) and not already overlapping it (a collision is the collision term's business).
Nothing is checked while the ego is stopped (nuPlan: an ego standing still cannot be
responsible for a short TTC). Unlike WOSAC's TTC, which follows one leader in the same
lane, this sees crossing and merging objects too.

**Driving direction** (:func:`against_traffic_progress`, nuPlan's
``driving_direction_compliance``): a step's displacement counts as against traffic when
lane centres lie within ``lane_radius`` of the ego's centre but none of them points
within 90 degrees of the displacement (so driving through an intersection, where some
connector goes the ego's way, is not penalised, and a road without lane centres never
is). The term looks at the metres driven against traffic in every window of
``direction_window`` steps (1 s): at most ``direction_compliance`` (2 m) gives 1, at most
``direction_violation`` (6 m) 0.5, more 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spacer_jax.sim.datatypes import RoadgraphPoints
from spacer_jax.sim.datatypes.roadgraph import is_lane
from spacer_jax.sim.geometry import box_pair_margins


def _margins(xi, yi, li, wi, hi, xj, yj, lj, wj, hj) -> jax.Array:
  """Smallest separating-axis overlap of boxes i and j (> 0: they overlap)."""
  return jnp.min(box_pair_margins(xi, yi, li, wi, hi, xj, yj, lj, wj, hj), -1)


def ego_time_to_collision(x: jax.Array, y: jax.Array, length: jax.Array, width: jax.Array,
                          yaw: jax.Array, valid: jax.Array, ego: jax.Array, *,
                          horizon: float, time_step: float, dt: float,
                          stopped_speed: float, no_collision: float) -> jax.Array:
  """The ego's time to collision at every step (module doc).

  Args:
    x, y, length, width, yaw: ``(..., N, W + 1)`` boxes of every object; the first step
      only gives the velocity of the second (the window is steps 1..W).
    valid: ``(..., N, W + 1)`` bool.
    ego: ``(...)`` int, the ego's row.
    horizon: seconds of extrapolation (nuPlan: 3 s).
    time_step: seconds between extrapolated poses (nuPlan: 0.1 s).
    dt: seconds per simulator step.
    stopped_speed: m/s; a slower ego has no TTC.
    no_collision: the value where nothing is hit within the horizon.

  Returns:
    ``(..., W)`` seconds, ``no_collision`` where nothing in the ego's path would be hit.
  """
  pick = lambda a: jnp.take_along_axis(a, ego[..., None, None], axis=-2)  # (..., 1, W+1)
  vel = lambda a: (a[..., 1:] - a[..., :-1]) / dt
  now = lambda a: a[..., 1:]
  both_valid = valid[..., 1:] & valid[..., :-1]
  ox, oy, ol, ow, oh = (now(a) for a in (x, y, length, width, yaw))
  ovx, ovy = (jnp.where(both_valid, vel(a), 0.0) for a in (x, y))
  ex, ey, el, ew, eh, evx, evy = (pick(a) for a in (ox, oy, ol, ow, oh, ovx, ovy))
  ego_valid = pick(both_valid)
  moving = ego_valid & (jnp.hypot(evx, evy) >= stopped_speed)  # (..., 1, W)
  ahead = (ox - ex) * jnp.cos(eh) + (oy - ey) * jnp.sin(eh) > 0
  not_ego = (jnp.arange(x.shape[-2]) != ego[..., None])[..., None]
  overlapping_now = _margins(ex, ey, el, ew, eh, ox, oy, ol, ow, oh) > 0
  relevant = valid[..., 1:] & not_ego & ahead & ~overlapping_now & moving  # (..., N, W)

  times = jnp.arange(1, int(round(horizon / time_step)) + 1) * time_step  # (K,)
  at = lambda p, v: p[..., None] + v[..., None] * times  # (..., W, K)
  hit = _margins(at(ex, evx), at(ey, evy), el[..., None], ew[..., None], eh[..., None],
                 at(ox, ovx), at(oy, ovy), ol[..., None], ow[..., None],
                 oh[..., None]) > 0  # (..., N, W, K)
  hit = hit & relevant[..., None]
  first = jnp.where(hit, times, jnp.inf).min(-1).min(-2)  # (..., W)
  return jnp.where(jnp.isfinite(first), first, no_collision)


def against_traffic_progress(x: jax.Array, y: jax.Array, valid: jax.Array,
                             roadgraph: RoadgraphPoints, *, lane_radius: float
                             ) -> jax.Array:
  """Metres driven against traffic in each step of the ego's track (module doc).

  Args:
    x, y: ``(..., W + 1)`` the ego's centre (m). valid: ``(..., W + 1)`` bool.
    roadgraph: ``(..., P)`` points; lane centres (types 0-3) carry their direction.
    lane_radius: metres; lane centres nearer than this to the ego's centre count.

  Returns:
    ``(..., W)`` metres (0 where the ego did not move against every nearby lane).
  """
  dx, dy = jnp.diff(x, axis=-1), jnp.diff(y, axis=-1)
  step = jnp.hypot(dx, dy)
  mid_x, mid_y = 0.5 * (x[..., 1:] + x[..., :-1]), 0.5 * (y[..., 1:] + y[..., :-1])
  lane = (roadgraph.valid & is_lane(roadgraph.types))[..., None, :]  # (..., 1, P)
  near = lane & (jnp.hypot(roadgraph.x[..., None, :] - mid_x[..., None],
                           roadgraph.y[..., None, :] - mid_y[..., None]) < lane_radius)
  along = roadgraph.dir_x[..., None, :] * dx[..., None] + roadgraph.dir_y[..., None, :] * dy[
      ..., None]
  against = jnp.any(near, -1) & ~jnp.any(near & (along > 0), -1)
  moved = valid[..., 1:] & valid[..., :-1]
  return jnp.where(against & moved, step, 0.0)


def window_sums(a: jax.Array, window: int) -> jax.Array:
  """Sums of every ``window`` consecutive entries along the last axis (length shrinks
  by ``window - 1``)."""
  c = jnp.cumsum(jnp.concatenate([jnp.zeros_like(a[..., :1]), a], -1), -1)
  return c[..., window:] - c[..., :-window]


def driving_direction_compliance(against: jax.Array, *, window: int, compliance: float,
                                 violation: float) -> tuple[jax.Array, jax.Array]:
  """nuPlan's driving-direction term from per-step metres against traffic ``(..., W)``.

  Returns ``(term, worst)``: the term (1, 0.5 or 0) and the most metres driven against
  traffic within any ``window`` consecutive steps, both ``(...)``.
  """
  worst = jnp.max(window_sums(against, min(window, against.shape[-1])), -1)
  term = jnp.where(worst <= compliance, 1.0, jnp.where(worst <= violation, 0.5, 0.0))
  return term, worst


__all__ = ['against_traffic_progress', 'driving_direction_compliance',
           'ego_time_to_collision', 'window_sums']
