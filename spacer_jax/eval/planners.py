"""Ego planners for closed-loop planner evaluation.

An :class:`EgoPlanner` drives the self-driving car (SDC) inside
``spacer_jax.eval.sim_agents.closed_loop_rollout``: at every decision step (``S``
simulator steps of 0.1 s, the token rate) it returns the SDC's next ``S`` poses as a
one-row ``Motion``, and the runner overrides the sim-agent policy's SDC row with it.

Planners, all pure and jittable, batch dims ``(...)`` leading:

* :class:`IDMPlanner`: the Intelligent Driver Model along the SDC's logged path (the
  route, as nuPlan-style evaluations give planners the expert's route), with the nearest
  object in the SDC's corridor ahead as leader and a curvature speed cap. Its
  parameters are an :class:`IDMParams` pytree, so a whole grid shares one compile;
  :func:`idm_planner_grid` spans timid to aggressive around the paper's baseline (spec:
  v0 30 m/s, s0 2 m, T 1.5 s, a 2 m/s^2, b 3 m/s^2).
* :class:`FrenetPlanner`: a sampling planner in the route's Frenet frame; candidates are
  lateral offsets x target speeds (quintic lateral profile over arc length, constant
  acceleration longitudinally), each scored against constant-velocity predictions of the
  other objects, road edges, the route, comfort and progress; the cheapest is driven.
  :func:`frenet_planner_family` gives cautious / nominal / assertive weightings.
* :class:`PolicyEgo`: any ``SimAgentPolicy`` (e.g. a learned self-play policy) as ego.

Both scripted planners stop at red lights on the route and at the route's end
(:class:`StopRules`).

``spacer_jax.eval.sim_agents`` (the runner, ``Motion``) is imported lazily inside
methods, so this module imports on its own.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from spacer_jax.eval.features import box_signed_distance
from spacer_jax.sim import geometry
from spacer_jax.sim.agents.idm import logged_paths, point_at, project_onto_path
from spacer_jax.sim.datatypes import TIMESTEP_SECONDS, SimulatorState, is_red
from spacer_jax.sim.metrics import road_edges

_EPS = 1e-6

# -- the interface ----------------------------------------------------------------------


class EgoPlanner(abc.ABC):
  """Drives the SDC in closed loop. Subclasses are frozen dataclasses with a ``name``
  field; all methods are pure and jittable (batch dims ``(...)`` lead every array)."""

  name: str

  @abc.abstractmethod
  def init(self, params: Any, state: SimulatorState, rng: jax.Array) -> Any:
    """The planner's carry for an episode; ``state`` is already reset."""

  @abc.abstractmethod
  def plan(self, params: Any, carry: Any, state: SimulatorState, rng: jax.Array
           ) -> tuple[Any, Any]:
    """``(carry, Motion)``: the SDC's next ``S`` sub-steps, one row.

    The ``Motion`` has ``poses (..., 1, S, 3)`` world (x, y, yaw) in m / rad,
    ``velocities (..., 1, S, 2)`` m/s and ``valid (..., 1)``.
    """


def make_motion(poses: jax.Array, velocities: jax.Array, valid: jax.Array) -> Any:
  """A ``spacer_jax.eval.sim_agents.Motion`` (imported here, lazily)."""
  from spacer_jax.eval.sim_agents import Motion
  return Motion(poses=poses, velocities=velocities, valid=valid)


# -- the SDC and its route --------------------------------------------------------------


def sdc_index(state: SimulatorState) -> jax.Array:
  """Row of the SDC, ``(...)`` int32 (0 when no object is flagged)."""
  return jnp.argmax(state.object_metadata.is_sdc, axis=-1).astype(jnp.int32)


def take_object(values: jax.Array, index: jax.Array, obj_axis: int = -1) -> jax.Array:
  """Row ``index (...)`` of ``values`` along the object axis, kept with size 1.

  ``obj_axis=-1`` for ``(..., N)`` arrays, ``-2`` for ``(..., N, T)``, ``-3`` for
  ``(..., N, S, 3)``.
  """
  shape = index.shape + (1,) + (1,) * (-obj_axis - 1)
  return jnp.take_along_axis(values, index.reshape(shape), axis=values.ndim + obj_axis)


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


@struct.dataclass
class EgoNow:
  """The SDC at the current step; every field ``(..., 1)``."""

  x: jax.Array
  y: jax.Array
  yaw: jax.Array
  vel_x: jax.Array
  vel_y: jax.Array
  length: jax.Array
  width: jax.Array
  valid: jax.Array

  @property
  def xy(self) -> jax.Array:
    return jnp.stack([self.x, self.y], -1)

  @property
  def speed(self) -> jax.Array:
    return jnp.hypot(self.vel_x, self.vel_y)


def ego_now(state: SimulatorState) -> EgoNow:
  """The SDC's current simulated box, speed and validity."""
  cur = state.current_sim_trajectory
  index = sdc_index(state)
  row = lambda a: take_object(a[..., 0], index)
  return EgoNow(x=row(cur.x), y=row(cur.y), yaw=row(cur.yaw), vel_x=row(cur.vel_x),
                vel_y=row(cur.vel_y), length=row(cur.length), width=row(cur.width),
                valid=row(cur.valid))


def _others(state: SimulatorState):
  """Current boxes of every object, ``(..., N)`` each, and the mask of valid non-SDC."""
  cur = state.current_sim_trajectory
  col = lambda a: a[..., 0]
  others = cur.valid[..., 0] & ~state.object_metadata.is_sdc
  return (col(cur.x), col(cur.y), col(cur.yaw), col(cur.vel_x), col(cur.vel_y),
          col(cur.length), col(cur.width)), others


@dataclasses.dataclass(frozen=True)
class StopRules:
  """Where the planners stop on their own: the end of the route and red lights.

  Attributes:
    route_end: stop where the SDC's last logged position ends: past it the route is a
      straight extrapolation that leaves curved roads, so, like nuPlan planners at the
      end of their mission route, the planners stop there. The stop line is half the
      SDC's length plus ``route_end_margin`` beyond the last logged centre, so that a
      planner that keeps up with the log is not held back before the log's end.
    route_end_margin: metres.
    red_lights: stop at the stop point of a red (STOP / ARROW_STOP) light on the route.
    light_lateral_tolerance: metres; a stop point this close to the route is on it.
    max_stop_decel: m/s^2; a light turning red closer than the SDC can stop at this
      deceleration is driven through (the dilemma zone).
  """

  route_end: bool = True
  route_end_margin: float = 3.0
  red_lights: bool = True
  light_lateral_tolerance: float = 2.0
  max_stop_decel: float = 6.0

  def __post_init__(self):
    if self.route_end_margin < 0 or self.light_lateral_tolerance < 0:
      raise ValueError('StopRules: route_end_margin and light_lateral_tolerance must be '
                       f'>= 0, got {self.route_end_margin}, {self.light_lateral_tolerance}.')
    if self.max_stop_decel <= 0:
      raise ValueError(f'StopRules.max_stop_decel must be positive, got {self.max_stop_decel}.')

  def stops(self, state: SimulatorState, route: Route, s: jax.Array, ego: EgoNow
            ) -> tuple[jax.Array, jax.Array]:
    """Route arc lengths (m) where the SDC's front bumper must stop, ``(..., K)``, and
    which of them apply now (bool ``(..., K)``); ``s`` is the SDC's arc ``(..., 1)``."""
    front = s + ego.length / 2
    # The path's second-to-last point is the last logged one (the last: the extension).
    arcs = [route.arc[..., 0, -2:-1] + ego.length / 2 + self.route_end_margin]
    active = [jnp.full_like(front, self.route_end, dtype=bool)]
    if self.red_lights:
      lights = state.current_traffic_light
      xy = jnp.stack([lights.x[..., 0], lights.y[..., 0]], -1)  # (..., L, 2)
      n = xy.shape[-2]
      rows = lambda a: jnp.broadcast_to(a, a.shape[:-3] + (n,) + a.shape[-2:])
      s_light = project_onto_path(rows(route.points), rows(route.arc[..., None])[..., 0], xy)
      foot, _ = route_pose(route, s_light[..., None, :])
      near = jnp.linalg.norm(xy - foot[..., 0, :, :], axis=-1) < self.light_lateral_tolerance
      gap = s_light - front
      can_stop = ego.speed**2 <= 2.0 * self.max_stop_decel * jnp.maximum(gap, 0.0)
      red = lights.valid[..., 0] & is_red(lights.state[..., 0])
      arcs.append(s_light)
      active.append(red & near & (gap > -1.0) & can_stop)
    return jnp.concatenate(arcs, -1), jnp.concatenate(active, -1)


def _check_positive(obj: Any, names: tuple[str, ...]) -> None:
  for name in names:
    value = getattr(obj, name)
    if value is not None and value <= 0:
      raise ValueError(f'{type(obj).__name__}.{name} must be positive, got {value}.')


# -- IDM ------------------------------------------------------------------------------


@struct.dataclass
class IDMParams:
  """IDM parameters (traced, so a grid of them shares one compiled rollout).

  Attributes:
    desired_speed_factor: v0 = factor * ``IDMPlanner.base_speed``.
    time_headway: T, seconds.
    min_gap: s0, metres bumper to bumper.
    max_accel: a, m/s^2.
    comfortable_decel: b, m/s^2.
  """

  desired_speed_factor: jax.Array
  time_headway: jax.Array
  min_gap: jax.Array
  max_accel: jax.Array
  comfortable_decel: jax.Array

  @classmethod
  def create(cls, desired_speed_factor: float = 1.0, time_headway: float = 1.5,
             min_gap: float = 2.0, max_accel: float = 2.0, comfortable_decel: float = 3.0
             ) -> IDMParams:
    """Checked constructor; the defaults are the paper's baseline IDM."""
    values = dict(desired_speed_factor=desired_speed_factor, time_headway=time_headway,
                  min_gap=min_gap, max_accel=max_accel, comfortable_decel=comfortable_decel)
    for name, value in values.items():
      ok = np.all(np.asarray(value) >= 0) if name == 'min_gap' else np.all(
          np.asarray(value) > 0)
      if not ok:
        raise ValueError(f'IDMParams.{name} must be positive (min_gap >= 0), got {value}.')
    return cls(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})


@struct.dataclass
class IDMCarry:
  """The route and its speed cap profile (``(..., 1, M)`` m/s, fixed per episode)."""

  route: Route
  speed_cap: jax.Array


@dataclasses.dataclass(frozen=True)
class IDMPlanner(EgoPlanner):
  """IDM speed control along the SDC's logged path (positions stay on the route).

  ``a = a_max [1 - (v / v0)^delta - (s* / s)^2]``, ``s* = s0 + max(0, v T + v dv /
  (2 sqrt(a_max b)))`` with ``s`` the bumper-to-bumper gap to the leader. The leader is
  found once per decision step and assumed to keep its speed through the ``S``
  sub-steps, each integrated with IDM: it is the nearest valid object whose centre
  projects onto the route between the SDC and ``lookahead_distance`` ahead and whose box
  reaches into the SDC's corridor (lateral distance from the route minus the object's
  half-extent across it below half the SDC's width plus ``lateral_margin``).

  Stops (:class:`StopRules`: the end of the route, red lights) are a second leader
  standing still at its stop line; the lower of the two accelerations applies. v0 is
  ``desired_speed_factor * base_speed``, capped by the route's curvature
  (:func:`speed_cap_profile` with ``lateral_accel_limit`` and b); the acceleration is
  clipped to ``[-max_decel, a_max]`` (IDM's braking term is unbounded).

  Attributes:
    name: label.
    base_speed: m/s; the spec's baseline v0 (30 m/s).
    exponent: delta.
    lookahead_distance: metres of route ahead searched for a leader.
    lateral_margin: metres added to each side of the SDC's corridor.
    lateral_accel_limit: m/s^2 of the curvature speed cap (None: no cap).
    max_decel: m/s^2, physical braking limit.
    min_gap_floor: metres; the gap is clamped to this in the IDM formula.
    stop_rules: route end and red lights.
    steps_per_decision: S, simulator steps per plan (the vocabulary's steps per token).
    dt: simulator step, seconds.
  """

  name: str = 'idm'
  base_speed: float = 30.0
  exponent: float = 4.0
  lookahead_distance: float = 60.0
  lateral_margin: float = 0.3
  lateral_accel_limit: float | None = 3.0
  max_decel: float = 9.0
  min_gap_floor: float = 0.1
  stop_rules: StopRules = StopRules()
  steps_per_decision: int = 2
  dt: float = TIMESTEP_SECONDS

  def __post_init__(self):
    _check_positive(self, ('base_speed', 'exponent', 'lookahead_distance',
                           'lateral_accel_limit', 'max_decel', 'min_gap_floor',
                           'steps_per_decision', 'dt'))
    if self.lateral_margin < 0:
      raise ValueError(f'IDMPlanner.lateral_margin must be >= 0, got {self.lateral_margin}.')

  def default_params(self) -> IDMParams:
    """The spec's baseline IDM."""
    return IDMParams.create()

  def init(self, params: IDMParams, state: SimulatorState, rng: jax.Array) -> IDMCarry:
    del rng
    route = sdc_route(state)
    return IDMCarry(route=route, speed_cap=speed_cap_profile(
        route, self.lateral_accel_limit, params.comfortable_decel))

  def acceleration(self, params: IDMParams, speed: jax.Array, desired_speed: jax.Array,
                   gap: jax.Array, lead_speed: jax.Array, has_leader: jax.Array
                   ) -> jax.Array:
    """IDM acceleration (m/s^2), elementwise, clipped to ``[-max_decel, a_max]``."""
    a_max, b = params.max_accel, params.comfortable_decel
    free = 1.0 - jnp.power(speed / jnp.maximum(desired_speed, 0.1), self.exponent)
    desired_gap = params.min_gap + jnp.maximum(
        0.0, speed * params.time_headway + speed * (speed - lead_speed)
        / (2.0 * jnp.sqrt(a_max * b)))
    interaction = (desired_gap / jnp.maximum(gap, self.min_gap_floor)) ** 2
    accel = a_max * (free - jnp.where(has_leader, interaction, 0.0))
    return jnp.clip(accel, -self.max_decel, a_max)

  def find_leader(self, state: SimulatorState, route: Route, s: jax.Array, ego: EgoNow
                  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Nearest valid non-SDC object in the SDC's corridor ahead (class doc).

    Returns ``(has_leader, gap, lead_speed)``, each ``(..., 1)``: bumper-to-bumper gap
    along the route (m) and the leader's velocity along the route (>= 0, m/s: an
    oncoming or crossing object is an obstacle, not a faster leader).
    """
    (x, y, yaw, vx, vy, length, width), others = _others(state)
    xy = jnp.stack([x, y], -1)  # (..., N, 2)
    n = xy.shape[-2]
    rows = lambda a: jnp.broadcast_to(a, a.shape[:-3] + (n,) + a.shape[-2:])
    s_obj = project_onto_path(rows(route.points), rows(route.arc[..., None])[..., 0], xy)
    foot, heading = route_pose(route, s_obj[..., None, :])  # (..., 1, N, 2), (..., 1, N)
    foot, heading = foot[..., 0, :, :], heading[..., 0, :]
    cos_h, sin_h = jnp.cos(heading), jnp.sin(heading)
    offset = xy - foot
    lateral = jnp.abs(cos_h * offset[..., 1] - sin_h * offset[..., 0])
    rel = yaw - heading
    half_along = length / 2 * jnp.abs(jnp.cos(rel)) + width / 2 * jnp.abs(jnp.sin(rel))
    half_across = length / 2 * jnp.abs(jnp.sin(rel)) + width / 2 * jnp.abs(jnp.cos(rel))
    along = s_obj - s  # (..., N), centre to centre along the route
    in_path = (others & (along > 0) & (along <= self.lookahead_distance)
               & (lateral - half_across < ego.width / 2 + self.lateral_margin))
    gap = jnp.where(in_path, along - ego.length / 2 - half_along, jnp.inf)
    best = jnp.argmin(gap, axis=-1)[..., None]
    has_leader = jnp.any(in_path, axis=-1, keepdims=True)
    lead_speed = jnp.take_along_axis(vx * cos_h + vy * sin_h, best, -1)
    return (has_leader, jnp.where(has_leader, jnp.take_along_axis(gap, best, -1), 0.0),
            jnp.where(has_leader, jnp.maximum(lead_speed, 0.0), 0.0))

  def plan(self, params: IDMParams, carry: IDMCarry, state: SimulatorState, rng: jax.Array
           ) -> tuple[IDMCarry, Any]:
    del rng
    route = carry.route
    ego = ego_now(state)
    s = project_onto_path(route.points, route.arc, ego.xy)  # (..., 1)
    speed = ego.speed
    has_leader, gap, lead_speed = self.find_leader(state, route, s, ego)
    # The nearest stop is a second leader, standing still at its stop line; the SDC takes
    # the lower of the two IDM accelerations (so it brakes for a stop hidden behind a
    # moving leader in time, not when the leader clears it).
    stop_arc, stop_on = self.stop_rules.stops(state, route, s, ego)
    stop_gap = jnp.min(jnp.where(stop_on, stop_arc - s - ego.length / 2, jnp.inf), -1,
                       keepdims=True)
    has_stop = jnp.isfinite(stop_gap)
    stop_gap = jnp.where(has_stop, stop_gap, 0.0)
    v0 = jnp.minimum(params.desired_speed_factor * self.base_speed,
                     speed_cap_at(route, carry.speed_cap, s))
    arcs, speeds = [], []
    for _ in range(self.steps_per_decision):
      accel = jnp.minimum(
          self.acceleration(params, speed, v0, gap, lead_speed, has_leader),
          self.acceleration(params, speed, v0, stop_gap, 0.0, has_stop))
      new_speed = jnp.maximum(speed + accel * self.dt, 0.0)
      # Trapezoidal distance: a stop inside the step never drives backwards.
      ds = 0.5 * (speed + new_speed) * self.dt
      s, speed = s + ds, new_speed
      gap = gap - ds + lead_speed * self.dt
      stop_gap = stop_gap - ds
      arcs.append(s)
      speeds.append(speed)
    arcs, speeds = jnp.stack(arcs, -1), jnp.stack(speeds, -1)  # (..., 1, S)
    xy, heading = route_pose(route, arcs)
    poses = jnp.concatenate([xy, heading[..., None]], -1)
    velocities = speeds[..., None] * jnp.stack([jnp.cos(heading), jnp.sin(heading)], -1)
    return carry, make_motion(poses, velocities, ego.valid)


def _interpolate(alpha: float, low: float, base: float, high: float) -> float:
  """Geometric interpolation: ``low`` at alpha = -1, ``base`` at 0, ``high`` at 1."""
  end = high if alpha >= 0 else low
  return float(base * (end / base) ** abs(alpha))


# Timid (alpha = -1) / baseline (0, the spec's IDM) / aggressive (+1) IDM parameters.
IDM_GRID_ENDPOINTS = {
    'desired_speed_factor': (0.5, 1.0, 1.2),
    'time_headway': (2.5, 1.5, 0.8),
    'min_gap': (4.0, 2.0, 1.0),
    'max_accel': (1.0, 2.0, 3.0),
    'comfortable_decel': (2.0, 3.0, 4.5),
}


def idm_planner_grid(n: int = 10, planner: IDMPlanner | None = None
                     ) -> dict[str, tuple[IDMPlanner, IDMParams]]:
  """``n`` IDM parameterisations from timid to aggressive, sharing one planner.

  Aggressiveness ``alpha`` runs over ``linspace(-1, 1, n)``; each parameter moves
  geometrically from its timid value (alpha -1) through the spec's baseline (alpha 0:
  v0 = 30 m/s, T 1.5 s, s0 2 m, a 2 m/s^2, b 3 m/s^2) to its aggressive value (+1), per
  :data:`IDM_GRID_ENDPOINTS`: desired speed factor 0.5 / 1.0 / 1.2, time headway
  2.5 / 1.5 / 0.8 s, minimum gap 4 / 2 / 1 m, max acceleration 1 / 2 / 3 m/s^2,
  comfortable deceleration 2 / 3 / 4.5 m/s^2. For n = 10 the entries are named
  ``idm_0`` (timid) .. ``idm_9`` (aggressive); odd n contains the baseline exactly.

  Returns:
    name -> ``(planner, params)``, ordered timid to aggressive.
  """
  if n < 1:
    raise ValueError(f'idm_planner_grid: n must be >= 1, got {n}.')
  planner = planner or IDMPlanner()
  alphas = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
  grid = {}
  for i, alpha in enumerate(alphas):
    values = {k: _interpolate(alpha, *v) for k, v in IDM_GRID_ENDPOINTS.items()}
    grid[f'idm_{i}'] = (planner, IDMParams.create(**values))
  return grid


# -- Frenet sampling planner -------------------------------------------------------------


@struct.dataclass
class FrenetParams:
  """Weights and limits of :class:`FrenetPlanner`'s cost (traced, grid-friendly).

  Attributes:
    desired_speed_factor: top target speed = factor * ``base_speed`` (curvature capped).
    accel: m/s^2 of the constant-acceleration speed-up candidates.
    decel: m/s^2 of the slow-down candidates (the emergency stop uses ``max_decel``).
    safety_margin: metres; a predicted box distance below it is a collision.
    clearance: metres; distances below it cost ``w_clearance * (clearance - d)^2``.
    w_collision: cost of a predicted collision (halved when it is at the horizon).
    w_clearance, w_offset (per m^2 of mean lateral offset), w_offroad (any corner past a
    road edge), w_accel (per (m/s^2)^2), w_lateral (per (m/s^2)^2 of lateral
    acceleration above the planner's limit), w_switch (per m^2 of change of target
    offset since the last plan), w_progress (per unit of progress relative to driving
    the top speed for the whole horizon).
  """

  desired_speed_factor: jax.Array
  accel: jax.Array
  decel: jax.Array
  safety_margin: jax.Array
  clearance: jax.Array
  w_collision: jax.Array
  w_clearance: jax.Array
  w_offset: jax.Array
  w_offroad: jax.Array
  w_accel: jax.Array
  w_lateral: jax.Array
  w_switch: jax.Array
  w_progress: jax.Array

  @classmethod
  def create(cls, desired_speed_factor: float = 1.0, accel: float = 1.5,
             decel: float = 3.0, safety_margin: float = 0.5, clearance: float = 1.5,
             w_collision: float = 100.0, w_clearance: float = 1.0, w_offset: float = 0.05,
             w_offroad: float = 50.0, w_accel: float = 0.05, w_lateral: float = 1.0,
             w_switch: float = 0.02, w_progress: float = 3.0) -> FrenetParams:
    """Checked constructor; the defaults are the 'nominal' planner."""
    values = {k: v for k, v in locals().items() if k != 'cls'}
    for name, value in values.items():
      if not np.all(np.asarray(value) >= 0):
        raise ValueError(f'FrenetParams.{name} must be >= 0, got {value}.')
    for name in ('desired_speed_factor', 'accel', 'decel'):
      if not np.all(np.asarray(values[name]) > 0):
        raise ValueError(f'FrenetParams.{name} must be positive, got {values[name]}.')
    return cls(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})


@struct.dataclass
class FrenetCarry:
  """The route and the lateral manoeuvre under way, each ``(..., 1)``.

  Attributes:
    route: the SDC's logged path.
    speed_cap: ``(..., 1, M)`` m/s, :func:`speed_cap_profile` of the route.
    target_offset: lateral offset (m) the last plan steers to.
    end_arc: route arc length (m) where that manoeuvre ends.
    curvature: ``d''(sigma)`` (1/m) of the driven profile at the SDC's current point, so
      the next plan starts with the lateral curvature the last one left.
  """

  route: Route
  speed_cap: jax.Array
  target_offset: jax.Array
  end_arc: jax.Array
  curvature: jax.Array


@struct.dataclass
class _Candidates:
  """Candidate profiles, fields ``(..., C)`` (``s0, d0, slope0, curv0, v0``: ``(..., 1)``)."""

  s0: jax.Array
  d0: jax.Array
  slope0: jax.Array
  curv0: jax.Array
  v0: jax.Array
  offset: jax.Array
  target_speed: jax.Array
  accel: jax.Array
  lateral_length: jax.Array


_WALL_DEPTH = 1.0  # metres along the route of a stop "wall" (Frenet planner)
_WALL_WIDTH = 14.0  # metres across: blocks every lateral offset candidate


@dataclasses.dataclass(frozen=True)
class FrenetPlanner(EgoPlanner):
  """Sampling planner in the route's Frenet frame (s along the route, d to its left).

  Candidates: every lateral offset in ``offsets`` x every target speed (the fractions
  ``speed_fractions`` of the desired speed, the current speed, stops at each of
  ``stop_decels`` and an emergency stop at ``max_decel``; the progress term then picks
  the gentlest stop that avoids a collision).

  Lateral: a quintic ``d(sigma)`` of the travelled arc ``sigma`` from the current
  offset, slope (``tan`` of the heading relative to the route) and the curvature the
  last plan left, to the target offset with zero slope and curvature after
  ``lateral_time * max(v, V)`` metres (clipped to ``[min_lateral_length,
  max_lateral_length]``). A candidate keeping the manoeuvre under way ends where it was
  planned to end, so replanning every step does not push the lane change ahead of the
  car; tying ``d`` to arc length keeps a stopped car from sliding sideways.
  Longitudinal: constant acceleration (``accel`` up, ``decel`` down) until the target
  speed, then constant speed.

  Each candidate is sampled every ``horizon / num_samples`` seconds and costed (weights
  in :class:`FrenetParams`): predicted collisions and clearance against every valid
  non-SDC object moving at constant velocity (exact box distances), corners past a road
  edge (every ``offroad_every``-th sample), mean squared offset from the route,
  acceleration, lateral acceleration over ``lateral_accel_limit``, change of target
  offset since the last plan, minus progress. Stops (:class:`StopRules`: the end of the
  route, red lights) are standing walls across the road at the stop line. The cheapest
  candidate's first ``S`` sub-steps are driven; the planner replans every decision step.

  Attributes:
    name: label.
    base_speed: m/s, scaled by ``FrenetParams.desired_speed_factor``.
    offsets: target lateral offsets, metres (left positive).
    speed_fractions: target speeds as fractions of the desired speed.
    stop_decels: m/s^2 of extra stopping candidates (gentle stops).
    horizon: seconds. num_samples: cost samples over the horizon.
    lateral_time, min_lateral_length, max_lateral_length: see above (s, m, m).
    lateral_accel_limit: m/s^2, for the curvature cap and the lateral cost.
    max_decel: m/s^2 of the emergency stop.
    offroad_every: check road edges at every k-th sample (0: never).
    stop_rules: route end and red lights.
    steps_per_decision: S. dt: simulator step, seconds.
  """

  name: str = 'frenet'
  base_speed: float = 30.0
  offsets: tuple[float, ...] = (-3.5, -1.75, 0.0, 1.75, 3.5)
  speed_fractions: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
  stop_decels: tuple[float, ...] = (0.5, 1.0, 2.0)
  horizon: float = 4.0
  num_samples: int = 20
  lateral_time: float = 2.5
  min_lateral_length: float = 8.0
  max_lateral_length: float = 50.0
  lateral_accel_limit: float = 3.0
  max_decel: float = 8.0
  offroad_every: int = 2
  stop_rules: StopRules = StopRules()
  steps_per_decision: int = 2
  dt: float = TIMESTEP_SECONDS

  def __post_init__(self):
    object.__setattr__(self, 'offsets', tuple(float(o) for o in self.offsets))
    object.__setattr__(self, 'speed_fractions', tuple(float(f) for f in self.speed_fractions))
    object.__setattr__(self, 'stop_decels', tuple(float(a) for a in self.stop_decels))
    if any(a <= 0 for a in self.stop_decels):
      raise ValueError(f'FrenetPlanner.stop_decels must be positive: {self.stop_decels}.')
    _check_positive(self, ('base_speed', 'horizon', 'num_samples', 'lateral_time',
                           'min_lateral_length', 'max_lateral_length',
                           'lateral_accel_limit', 'max_decel', 'steps_per_decision', 'dt'))
    if not self.offsets or not self.speed_fractions:
      raise ValueError('FrenetPlanner needs at least one offset and one speed fraction.')
    if any(f < 0 for f in self.speed_fractions):
      raise ValueError(f'FrenetPlanner.speed_fractions must be >= 0: {self.speed_fractions}.')
    if self.offroad_every < 0:
      raise ValueError(f'FrenetPlanner.offroad_every must be >= 0, got {self.offroad_every}.')

  @property
  def num_candidates(self) -> int:
    """C = offsets x (speed fractions + keep speed + stops + emergency stop)."""
    return len(self.offsets) * (len(self.speed_fractions) + len(self.stop_decels) + 2)

  def default_params(self) -> FrenetParams:
    return FrenetParams.create()

  def init(self, params: FrenetParams, state: SimulatorState, rng: jax.Array
           ) -> FrenetCarry:
    del rng
    route = sdc_route(state)
    s, d, _ = self._frenet_state(route, ego_now(state))
    cap = speed_cap_profile(route, self.lateral_accel_limit, params.decel)
    return FrenetCarry(route=route, speed_cap=cap, target_offset=d, end_arc=s,
                       curvature=jnp.zeros_like(d))

  def _frenet_state(self, route: Route, ego: EgoNow):
    """``(s, d, slope)`` of the SDC, each ``(..., 1)``."""
    s = project_onto_path(route.points, route.arc, ego.xy)
    xy, heading = route_pose(route, s[..., None])
    xy, heading = xy[..., 0, :], heading[..., 0]
    tangent = jnp.stack([jnp.cos(heading), jnp.sin(heading)], -1)
    d = geometry.cross2(tangent, ego.xy - xy)
    slope = jnp.tan(jnp.clip(geometry.wrap_angle(ego.yaw - heading), -0.7, 0.7))
    return s, d, slope

  def _candidates(self, params: FrenetParams, carry: FrenetCarry, ego: EgoNow
                  ) -> _Candidates:
    route = carry.route
    s0, d0, slope0 = self._frenet_state(route, ego)
    v0 = ego.speed
    v_des = params.desired_speed_factor * self.base_speed * jnp.ones_like(s0)
    v_des = jnp.minimum(v_des, speed_cap_at(route, carry.speed_cap, s0))
    fractions = jnp.asarray(self.speed_fractions, jnp.float32)
    num_stops = len(self.stop_decels) + 1
    # Targets: the fractions of v_des, the current speed, then stops at each of
    # stop_decels and at max_decel (the emergency stop).
    speeds = jnp.concatenate([fractions * v_des, v0, jnp.zeros(v0.shape[:-1] + (num_stops,))],
                             -1)  # (..., V)
    up = jnp.broadcast_to(params.accel, speeds.shape)
    stop_decels = jnp.asarray(self.stop_decels + (self.max_decel,), jnp.float32)
    down = jnp.concatenate([jnp.broadcast_to(params.decel, speeds.shape)[..., :-num_stops],
                            jnp.broadcast_to(stop_decels, v0.shape[:-1] + (num_stops,))], -1)
    accel = jnp.where(speeds > v0, up, -down)
    offsets = jnp.asarray(self.offsets, jnp.float32)
    num_v, num_d = speeds.shape[-1], offsets.shape[0]
    grid = lambda a: jnp.broadcast_to(a[..., None, :], a.shape[:-1] + (num_d, num_v)
                                      ).reshape(a.shape[:-1] + (num_d * num_v,))
    target_speed, accel = grid(speeds), grid(accel)
    offset = jnp.broadcast_to(jnp.repeat(offsets, num_v), target_speed.shape)
    length = jnp.clip(self.lateral_time * jnp.maximum(v0, target_speed),
                      self.min_lateral_length, self.max_lateral_length)
    ongoing = (jnp.abs(offset - carry.target_offset) < 1e-3) & (carry.end_arc > s0)
    length = jnp.where(ongoing, jnp.maximum(carry.end_arc - s0, 1.0), length)
    return _Candidates(s0=s0, d0=d0, slope0=slope0, curv0=carry.curvature, v0=v0,
                       offset=offset, target_speed=target_speed, accel=accel,
                       lateral_length=length)

  @staticmethod
  def _longitudinal(c: _Candidates, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Travelled arc and speed at times ``t`` ``(T,)``: ``(..., C, T)`` each."""
    a = c.accel[..., None]
    reach = jnp.maximum((c.target_speed - c.v0) / jnp.where(c.accel == 0, 1.0, c.accel), 0.0)
    reach = jnp.where(c.accel == 0, 0.0, reach)[..., None]
    t_acc = jnp.minimum(t, reach)
    v0 = c.v0[..., None]
    sigma = v0 * t + a * (0.5 * t_acc**2 + reach * (t - t_acc))
    speed = jnp.maximum(v0 + a * t_acc, 0.0)
    return sigma, speed

  @staticmethod
  def _lateral(c: _Candidates, sigma: jax.Array
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Offset, slope and curvature of the quintic ``d(sigma)``, ``(..., C, T)`` each.

    ``d = d0 + (D - d0) h(u) + slope0 L g(u) + curv0 L^2 k(u)`` with ``u = sigma / L``,
    ``h = 10u^3 - 15u^4 + 6u^5``, ``g = u - 6u^3 + 8u^4 - 3u^5`` and
    ``k = (u^2 - 3u^3 + 3u^4 - u^5) / 2``: the start matches (d0, slope0, curv0), the
    end (D, 0, 0); constant D after ``L``.
    """
    length = c.lateral_length[..., None]
    u = jnp.clip(sigma / length, 0.0, 1.0)
    inside = sigma < length
    h = u**3 * (10 - 15 * u + 6 * u**2)
    dh = 30 * u**2 * (1 - u) ** 2
    d2h = 60 * u - 180 * u**2 + 120 * u**3
    g = u - 6 * u**3 + 8 * u**4 - 3 * u**5
    dg = 1 - 18 * u**2 + 32 * u**3 - 15 * u**4
    d2g = -36 * u + 96 * u**2 - 60 * u**3
    k = 0.5 * (u**2 - 3 * u**3 + 3 * u**4 - u**5)
    dk = u - 4.5 * u**2 + 6 * u**3 - 2.5 * u**4
    d2k = 1 - 9 * u + 18 * u**2 - 10 * u**3
    delta = c.offset[..., None] - c.d0[..., None]
    slope0, curv0 = c.slope0[..., None], c.curv0[..., None]
    d = c.d0[..., None] + delta * h + slope0 * length * g + curv0 * length**2 * k
    slope = delta * dh / length + slope0 * dg + curv0 * length * dk
    curvature = delta * d2h / length**2 + slope0 * d2g / length + curv0 * d2k
    return d, jnp.where(inside, slope, 0.0), jnp.where(inside, curvature, 0.0)

  def _poses(self, route: Route, c: _Candidates, t: jax.Array):
    """World ``(x, y, yaw)`` and speed of every candidate at times ``t``: ``(..., C, T)``."""
    sigma, speed = self._longitudinal(c, t)
    d, slope, curvature = self._lateral(c, sigma)
    shape = sigma.shape
    flat = (c.s0[..., None] + sigma).reshape(shape[:-2] + (1, -1))  # (..., 1, C T)
    xy, heading = route_pose(route, flat)
    xy, heading = xy.reshape(shape + (2,)), heading.reshape(shape)
    normal = jnp.stack([-jnp.sin(heading), jnp.cos(heading)], -1)
    xy = xy + d[..., None] * normal
    return xy, heading + jnp.arctan(slope), speed, sigma, d, curvature

  def costs(self, params: FrenetParams, carry: FrenetCarry, state: SimulatorState
            ) -> tuple[jax.Array, _Candidates]:
    """Cost of every candidate, ``(..., C)``, and the candidates."""
    cost, c, _ = self._evaluate(params, carry, state)
    return cost, c

  def _evaluate(self, params: FrenetParams, carry: FrenetCarry, state: SimulatorState):
    """Costs ``(..., C)``, candidates, and every candidate's ``(xy, yaw, speed,
    curvature)`` at the ``S`` sub-steps (one evaluation serves both)."""
    route = carry.route
    ego = ego_now(state)
    c = self._candidates(params, carry, ego)
    k, num_sub = self.num_samples, self.steps_per_decision
    t = self.horizon * jnp.arange(1, k + 1, dtype=jnp.float32) / k
    t_sub = self.dt * jnp.arange(1, num_sub + 1, dtype=jnp.float32)
    xy, yaw, speed, sigma, d, curv = self._poses(route, c, jnp.concatenate([t_sub, t]))
    sub = (xy[..., :num_sub, :], yaw[..., :num_sub], speed[..., :num_sub],
           curv[..., :num_sub])
    xy, yaw, speed, sigma, d = (xy[..., num_sub:, :], yaw[..., num_sub:],
                                speed[..., num_sub:], sigma[..., num_sub:], d[..., num_sub:])

    (x, y, oyaw, vx, vy, length, width), others = _others(state)
    # Stops (route end, red lights) are standing walls across the road at the stop line.
    stop_arc, stop_on = self.stop_rules.stops(state, route, c.s0, ego)
    wall_xy, wall_yaw = route_pose(route, (stop_arc + 0.5 * _WALL_DEPTH)[..., None, :])
    wall = (wall_xy[..., 0, :, 0], wall_xy[..., 0, :, 1], wall_yaw[..., 0, :],
            jnp.zeros_like(stop_arc), jnp.zeros_like(stop_arc),
            jnp.full_like(stop_arc, _WALL_DEPTH), jnp.full_like(stop_arc, _WALL_WIDTH))
    x, y, oyaw, vx, vy, length, width = (jnp.concatenate([a, b], -1) for a, b in zip(
        (x, y, oyaw, vx, vy, length, width), wall))
    others = jnp.concatenate([others, stop_on], -1)
    pred = lambda p, v: p[..., None, :] + v[..., None, :] * t[:, None]  # (..., K, N)
    ox, oy = pred(x, vx), pred(y, vy)
    ego_dims = lambda a: a[..., None, None]  # (..., 1) -> (..., 1, 1, 1)
    dist = box_signed_distance(
        xy[..., 0][..., None], xy[..., 1][..., None], ego_dims(ego.length),
        ego_dims(ego.width), yaw[..., None],
        ox[..., None, :, :], oy[..., None, :, :], length[..., None, None, :],
        width[..., None, None, :], oyaw[..., None, None, :])  # (..., C, K, N)
    dist = jnp.min(jnp.where(others[..., None, None, :], dist, jnp.inf), axis=-1)
    hit = dist < params.safety_margin
    urgency = 1.0 - 0.5 * t / self.horizon
    collision = jnp.max(jnp.where(hit, urgency, 0.0), axis=-1)
    clearance = jnp.mean(jnp.maximum(params.clearance - dist, 0.0) ** 2, axis=-1)

    offroad = jnp.zeros_like(collision)
    if self.offroad_every:
      sel = slice(self.offroad_every - 1, None, self.offroad_every)
      corners = geometry.box_corners(xy[..., sel, 0], xy[..., sel, 1],
                                     ego_dims(ego.length)[..., 0],
                                     ego_dims(ego.width)[..., 0], yaw[..., sel])
      query = corners.reshape(corners.shape[:-4] + (-1, 2))
      # Road-edge distances are 3D (Waymax): query at the SDC's current height.
      z = take_object(state.current_sim_trajectory.z[..., 0], sdc_index(state))
      z = jnp.broadcast_to(z[..., None], query.shape[:-1] + (1,))
      query = jnp.concatenate([query, z], -1)
      edge = road_edges.signed_distance_to_road_edge(query, state.roadgraph_points,
                                                     state.road_edge_index)
      off = (edge.distance > 0) & edge.valid
      offroad = jnp.any(off.reshape(corners.shape[:-2] + (4,)), axis=(-2, -1))

    dt_sample = self.horizon / k
    yaw_rate = geometry.wrap_angle(jnp.diff(yaw, axis=-1)) / dt_sample
    lateral = jnp.max(jnp.abs(yaw_rate * speed[..., 1:]), axis=-1)
    v_top = jnp.maximum(params.desired_speed_factor * self.base_speed, 1.0)
    cost = (params.w_collision * collision + params.w_clearance * clearance
            + params.w_offroad * offroad + params.w_offset * jnp.mean(d**2, axis=-1)
            + params.w_accel * c.accel**2
            + params.w_lateral * jnp.maximum(lateral - self.lateral_accel_limit, 0.0) ** 2
            + params.w_switch * (c.offset - carry.target_offset) ** 2
            - params.w_progress * sigma[..., -1] / (v_top * self.horizon))
    return cost, c, sub

  def plan(self, params: FrenetParams, carry: FrenetCarry, state: SimulatorState,
           rng: jax.Array) -> tuple[FrenetCarry, Any]:
    del rng
    cost, c, (xy, yaw, speed, curvature) = self._evaluate(params, carry, state)
    best = jnp.argmin(cost, axis=-1)[..., None]  # (..., 1)
    pick = lambda a: jnp.take_along_axis(a, best, axis=-1) if a.shape[-1] > 1 else a
    chosen = jax.tree_util.tree_map(pick, c)
    row = lambda a: jnp.take_along_axis(a, best.reshape(best.shape + (1,) * (a.ndim - best.ndim)),
                                        axis=best.ndim - 1)
    xy, yaw, speed, curvature = row(xy), row(yaw), row(speed), row(curvature)  # (..., 1, S)
    poses = jnp.concatenate([xy, yaw[..., None]], -1)
    velocities = speed[..., None] * jnp.stack([jnp.cos(yaw), jnp.sin(yaw)], -1)
    new_carry = carry.replace(target_offset=chosen.offset,
                              end_arc=chosen.s0 + chosen.lateral_length,
                              curvature=curvature[..., -1])
    return new_carry, make_motion(poses, velocities, ego_now(state).valid)


# Cautious (alpha = -1) / nominal (0) / assertive (+1) Frenet weightings.
FRENET_FAMILY_ENDPOINTS = {
    'desired_speed_factor': (0.6, 1.0, 1.2),
    'accel': (1.0, 1.5, 2.5),
    'decel': (2.0, 3.0, 4.0),
    'safety_margin': (1.0, 0.5, 0.2),
    'clearance': (2.5, 1.5, 0.8),
    'w_clearance': (2.0, 1.0, 0.5),
    'w_progress': (1.5, 3.0, 6.0),
}


def frenet_planner_family(n: int = 3, planner: FrenetPlanner | None = None
                          ) -> dict[str, tuple[FrenetPlanner, FrenetParams]]:
  """``n`` Frenet weightings from cautious to assertive, sharing one planner.

  Like :func:`idm_planner_grid`: ``alpha`` over ``linspace(-1, 1, n)`` moves each entry
  of :data:`FRENET_FAMILY_ENDPOINTS` geometrically from cautious (slower top speed 0.6 x
  30 m/s, gentle acceleration, 1 m safety margin, 2.5 m clearance, low progress weight)
  through nominal (the :meth:`FrenetParams.create` defaults) to assertive (1.2 x, 0.2 m
  margin, 0.8 m clearance, high progress weight). n = 3 names them ``cautious``,
  ``nominal``, ``assertive``; other n ``frenet_0`` .. ``frenet_{n-1}``.
  """
  if n < 1:
    raise ValueError(f'frenet_planner_family: n must be >= 1, got {n}.')
  planner = planner or FrenetPlanner()
  alphas = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
  names = (['cautious', 'nominal', 'assertive'] if n == 3
           else [f'frenet_{i}' for i in range(n)])
  return {name: (planner, FrenetParams.create(
      **{k: _interpolate(alpha, *v) for k, v in FRENET_FAMILY_ENDPOINTS.items()}))
          for name, alpha in zip(names, alphas)}


# -- a sim-agent policy as ego -------------------------------------------------------------


@struct.dataclass
class PolicyEgoCarry:
  """The wrapped policy's carry, plus what its ``observe`` needs about the last step.

  Attributes:
    policy: the policy's carry.
    prev_trajectory: the simulated trajectory ``(..., N, T)`` when the last plan was made.
    prev_timestep: its timestep ``(...)``.
    has_prev: scalar bool, False before the first plan.
  """

  policy: Any
  prev_trajectory: Any
  prev_timestep: jax.Array
  has_prev: jax.Array


@dataclasses.dataclass(frozen=True)
class PolicyEgo(EgoPlanner):
  """Drives the SDC with any ``SimAgentPolicy`` (e.g. a learned self-play policy).

  The policy proposes every object's motion from its own carry; only the SDC's row is
  returned. Before proposing, the policy observes the step just executed (the state
  at the last plan and the current one), as the runner does for sim agents.
  """

  policy: Any
  name: str = ''

  def __post_init__(self):
    for method in ('init', 'propose', 'observe'):
      if not callable(getattr(self.policy, method, None)):
        raise TypeError(f'PolicyEgo: {self.policy!r} has no {method}() (expected a '
                        'SimAgentPolicy).')
    if not self.name:
      object.__setattr__(self, 'name', f"ego_{getattr(self.policy, 'name', 'policy')}")

  def init(self, params: Any, state: SimulatorState, rng: jax.Array) -> PolicyEgoCarry:
    return PolicyEgoCarry(policy=self.policy.init(params, state, rng),
                          prev_trajectory=state.sim_trajectory,
                          prev_timestep=state.timestep, has_prev=jnp.asarray(False))

  def plan(self, params: Any, carry: PolicyEgoCarry, state: SimulatorState, rng: jax.Array
           ) -> tuple[PolicyEgoCarry, Any]:
    prev = state.replace(sim_trajectory=carry.prev_trajectory, timestep=carry.prev_timestep)
    observed = self.policy.observe(params, carry.policy, prev, state)
    policy_carry = jax.tree_util.tree_map(lambda a, b: jnp.where(carry.has_prev, a, b),
                                          observed, carry.policy)
    motion = self.policy.propose(params, policy_carry, state, rng)
    index = sdc_index(state)
    row = make_motion(take_object(motion.poses, index, -3),
                      take_object(motion.velocities, index, -3),
                      # valid is (..., N) or, per sub-step, (..., N, S).
                      take_object(motion.valid, index,
                                  -1 if motion.valid.ndim == motion.poses.ndim - 2 else -2))
    new_carry = PolicyEgoCarry(policy=policy_carry, prev_trajectory=state.sim_trajectory,
                               prev_timestep=state.timestep, has_prev=jnp.asarray(True))
    return new_carry, row


__all__ = [
    'FRENET_FAMILY_ENDPOINTS', 'IDM_GRID_ENDPOINTS', 'EgoNow', 'EgoPlanner', 'FrenetCarry',
    'StopRules',
    'FrenetParams', 'FrenetPlanner', 'IDMParams', 'IDMPlanner', 'PolicyEgo', 'PolicyEgoCarry',
    'IDMCarry', 'Route', 'ego_now', 'frenet_planner_family', 'idm_planner_grid',
    'make_motion', 'route_pose', 'sdc_index', 'sdc_route', 'speed_cap_at',
    'speed_cap_profile', 'take_object',
]
