"""Route metrics of the SDC (need ``state.sdc_paths``; Waymax's route semantics).

Each returns a per-object :class:`MetricResult` ``(..., num_objects)`` whose only valid
entry is the SDC's (Waymax returns one value per scenario; here it sits in the SDC's
slot so every metric has the same shape). All are invalid when ``sdc_paths`` is None,
the SDC is invalid at ``state.timestep``, or the needed paths have no valid point.
Distances are planar (xy), to the path *points* (not segments), as in Waymax.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spacer_jax.sim.datatypes import SimulatorState
from spacer_jax.sim.metrics.base import MetricResult

WRONG_WAY_THRESHOLD = 3.5  # m from every route point.
MAX_DISTANCE_TO_ROUTE = 5.0  # m from the on-route paths.
MAX_RELATIVE_DISTANCE_TO_OFF_ROUTE = 2.0  # m closer to an off-route path than on-route.
FULL_PROGRESS = 1.0  # Progress when the logged start and end project to the same point.


def _sdc_select(values: jax.Array, is_sdc: jax.Array) -> jax.Array:
  """``(..., N, ...)`` -> ``(..., ...)``: the SDC's entry (0 when there is none)."""
  mask = is_sdc.reshape(is_sdc.shape + (1,) * (values.ndim - is_sdc.ndim))
  return jnp.sum(jnp.where(mask, values, 0), axis=is_sdc.ndim - 1)


def _invalid(state: SimulatorState) -> MetricResult:
  shape = state.object_metadata.shape
  return MetricResult.create(jnp.zeros(shape), jnp.zeros(shape, bool))


def _sdc_xy_valid(state: SimulatorState) -> tuple[jax.Array, jax.Array]:
  traj = state.current_sim_trajectory
  is_sdc = state.object_metadata.is_sdc
  xy = _sdc_select(traj.xy[..., 0, :], is_sdc)
  valid = jnp.any(is_sdc & traj.valid[..., 0], axis=-1)
  return xy, valid


def _distances(state: SimulatorState, xy: jax.Array) -> jax.Array:
  """Planar distance from ``xy`` ``(..., 2)`` to every path point, ``(..., paths, pts)``;
  +inf at invalid points."""
  paths = state.sdc_paths
  d = jnp.linalg.norm(paths.xy - xy[..., None, None, :], axis=-1)
  return jnp.where(paths.valid, d, jnp.inf)


def _per_object(state: SimulatorState, value: jax.Array, valid: jax.Array) -> MetricResult:
  """Puts the per-scenario SDC value ``(...)`` into the SDC slot of ``(..., N)``."""
  is_sdc = state.object_metadata.is_sdc
  valid = is_sdc & valid[..., None] & jnp.isfinite(value)[..., None]
  return MetricResult.create(jnp.where(valid, value[..., None], 0.0), valid)


def wrong_way(state: SimulatorState) -> MetricResult:
  """Distance (m) from the SDC to the nearest valid point of any path when it exceeds
  3.5 m (driving where no route goes), else 0."""
  if state.sdc_paths is None:
    return _invalid(state)
  xy, valid = _sdc_xy_valid(state)
  dist = jnp.min(_distances(state, xy), axis=(-2, -1))
  value = jnp.where(dist > WRONG_WAY_THRESHOLD, dist, 0.0)
  return _per_object(state, jnp.where(jnp.isfinite(dist), value, jnp.inf), valid)


def off_route(state: SimulatorState) -> MetricResult:
  """Distance (m) from the SDC to the on-route paths when it is off route, else 0.

  Off route: farther than 5 m from every on-route path point, or farther from the
  on-route paths than from the off-route ones by more than 2 m.
  """
  if state.sdc_paths is None:
    return _invalid(state)
  xy, valid = _sdc_xy_valid(state)
  d = _distances(state, xy)
  on = state.sdc_paths.on_route  # (..., paths, 1)
  d_on = jnp.min(jnp.where(on, d, jnp.inf), axis=(-2, -1))
  d_off = jnp.min(jnp.where(on, jnp.inf, d), axis=(-2, -1))
  is_off = (d_on > MAX_DISTANCE_TO_ROUTE) | (d_on - d_off > MAX_RELATIVE_DISTANCE_TO_OFF_ROUTE)
  return _per_object(state, jnp.where(is_off, d_on, 0.0), valid)


def progression(state: SimulatorState) -> MetricResult:
  """Progress of the SDC along its route, relative to the log: 0 at the logged start,
  1 at the logged end (can exceed 1 or be negative).

  The reference path is the on-route path with the valid point nearest to the SDC's
  current position. Positions are mapped to the arc length of their nearest valid
  point on it: ``(s_now - s_start) / (s_end - s_start)`` with start/end the logged
  SDC positions at the first and last log steps (Waymax's choice: index 0 and -1); 1.0
  when ``s_end == s_start``.
  """
  if state.sdc_paths is None:
    return _invalid(state)
  paths = state.sdc_paths
  xy, valid = _sdc_xy_valid(state)
  d = jnp.where(paths.on_route, _distances(state, xy), jnp.inf)
  nearest = jnp.min(d, axis=(-2, -1))
  ref = jnp.argmin(jnp.min(d, axis=-1), axis=-1)  # (...)
  pick = lambda a: jnp.take_along_axis(a, ref[..., None, None], axis=-2)[..., 0, :]
  ref_x, ref_y = pick(paths.x), pick(paths.y)
  ref_valid, ref_arc = pick(paths.valid), pick(paths.arc_length)

  def arc_at(p):
    dd = jnp.hypot(ref_x - p[..., 0:1], ref_y - p[..., 1:2])
    i = jnp.argmin(jnp.where(ref_valid, dd, jnp.inf), axis=-1)
    return jnp.take_along_axis(ref_arc, i[..., None], axis=-1)[..., 0]

  log = state.log_trajectory
  is_sdc = state.object_metadata.is_sdc
  start = _sdc_select(log.xy[..., 0, :], is_sdc)
  end = _sdc_select(log.xy[..., -1, :], is_sdc)
  s0, s1, s = arc_at(start), arc_at(end), arc_at(xy)
  progress = jnp.where(s1 == s0, FULL_PROGRESS, (s - s0) / jnp.where(s1 == s0, 1.0, s1 - s0))
  return _per_object(state, jnp.where(jnp.isfinite(nearest), progress, jnp.inf), valid)
