"""The route every planner follows (the SDC's logged path) and its curvature speed cap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.eval.planners.scene import sdc_index, take_object
from spacer_jax.sim import geometry
from spacer_jax.sim.agents.idm import logged_paths, point_at
from spacer_jax.sim.datatypes import SimulatorState

_EPS = 1e-6


@struct.dataclass
class Route:
  """The SDC's logged path (arc-length polyline, extended 1 km straight past its end).

  Attributes:
    points: ``(..., 1, M, 2)`` metres (``M = T + 1``).
    arc: ``(..., 1, M)`` cumulative arc length, metres.
    heading: ``(..., 1, M)`` radians at each point: the direction of the chord from
      1 m before to 1 m after it (smooths logged position noise).
  """

  points: jax.Array
  arc: jax.Array
  heading: jax.Array


def _chord_heading(points: jax.Array, arc: jax.Array, s: jax.Array, window: float
                   ) -> jax.Array:
  """Direction (rad) of the chord from ``s - window`` to ``s + window``, ``(..., 1, Q)``."""
  q = s.shape[-1]
  ends = point_at(points, arc, jnp.concatenate([s - window, s + window], -1))
  chord = ends[..., q:, :] - ends[..., :q, :]
  return jnp.arctan2(chord[..., 1], chord[..., 0])


def sdc_route(state: SimulatorState) -> Route:
  """The route every planner follows: the SDC's logged positions (history and future)."""
  index = sdc_index(state)
  row = jax.tree_util.tree_map(lambda a: take_object(a, index, -2), state.log_trajectory)
  points, arc, _ = logged_paths(row)
  return Route(points=points, arc=arc, heading=_chord_heading(points, arc, arc, 1.0))


def _segment(arc: jax.Array, s: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Segment index and (unclipped) fraction of arc lengths ``s`` ``(..., 1, Q)``, as
  ``point_at`` picks them (zero-length segments skipped, ends extrapolated)."""
  seg = jnp.clip(jnp.sum(arc[..., None, :] <= s[..., None], -1) - 1, 0, arc.shape[-1] - 2)
  a0 = jnp.take_along_axis(arc, seg, -1)
  a1 = jnp.take_along_axis(arc, seg + 1, -1)
  frac = jnp.where(a1 - a0 > _EPS, (s - a0) / jnp.maximum(a1 - a0, _EPS), 0.0)
  return seg, frac


def _interp(values: jax.Array, seg: jax.Array, frac: jax.Array) -> jax.Array:
  """Linear interpolation of per-point ``values (..., 1, M)`` within segments."""
  v0 = jnp.take_along_axis(values, seg, -1)
  return v0 + frac * (jnp.take_along_axis(values, seg + 1, -1) - v0)


def route_pose(route: Route, s: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Point and heading of the route at arc lengths ``s`` ``(..., 1, Q)``.

  Returns ``(xy (..., 1, Q, 2), heading (..., 1, Q))``: the polyline point (extrapolated
  past the ends) and the point headings interpolated as unit vectors.
  """
  seg, frac = _segment(route.arc, s)
  xy = jnp.stack([_interp(route.points[..., 0], seg, frac),
                  _interp(route.points[..., 1], seg, frac)], -1)
  f = jnp.clip(frac, 0.0, 1.0)
  c = _interp(jnp.cos(route.heading), seg, f)
  n = _interp(jnp.sin(route.heading), seg, f)
  return xy, jnp.arctan2(n, c)


_NO_CAP = 1e3  # m/s, "no speed cap" (finite so that interpolation stays finite)


def speed_cap_profile(route: Route, lateral_accel: float | None, decel: jax.Array,
                      preview: float = 60.0, spacing: float = 4.0) -> jax.Array:
  """Highest speed (m/s) at each route point from which the route ahead (up to
  ``preview`` m) stays within ``lateral_accel`` (m/s^2), braking at ``decel`` (m/s^2)
  before each bend: ``(..., 1, M)``. Computed once per episode.

  The curvature at a point is the heading change between the chords ``spacing`` metres
  long just before and just after it, over ``spacing`` (logged position noise of a few
  cm barely shows). ``lateral_accel`` None: no cap.
  """
  if lateral_accel is None:
    return jnp.full_like(route.arc, _NO_CAP)
  s, half = route.arc, spacing / 2
  heading = _chord_heading(route.points, route.arc, jnp.concatenate([s - half, s + half], -1),
                           half)
  m = s.shape[-1]
  kappa = jnp.abs(geometry.wrap_angle(heading[..., m:] - heading[..., :m])) / spacing
  v_bend = jnp.sqrt(lateral_accel / jnp.maximum(kappa, _EPS))
  dist = s[..., None, :] - s[..., :, None]  # (..., 1, M_i, M_j): s_j - s_i
  decel = jnp.asarray(decel)[..., None, None]
  reach = jnp.sqrt(v_bend[..., None, :] ** 2 + 2.0 * decel * jnp.maximum(dist, 0.0))
  ahead = (dist >= 0) & (dist <= preview)
  return jnp.minimum(jnp.min(jnp.where(ahead, reach, _NO_CAP), -1), _NO_CAP)


def speed_cap_at(route: Route, profile: jax.Array, s: jax.Array) -> jax.Array:
  """:func:`speed_cap_profile` interpolated at arc lengths ``s`` ``(..., 1)``."""
  seg, frac = _segment(route.arc, s[..., None])
  return _interp(profile, seg, jnp.clip(frac, 0.0, 1.0))[..., 0]
