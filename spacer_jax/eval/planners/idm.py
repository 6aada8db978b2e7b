"""The IDM ego planner along the SDC's route, and its timid-to-aggressive grid."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from spacer_jax.eval.planners.base import (
  EgoPlanner,
  check_positive,
  make_motion,
  parameter_sweep,
)
from spacer_jax.eval.planners.route import (
  Route,
  route_pose,
  sdc_route,
  speed_cap_at,
  speed_cap_profile,
)
from spacer_jax.eval.planners.scene import EgoNow, ego_now, other_objects
from spacer_jax.eval.planners.stops import StopRules
from spacer_jax.sim.agents.idm import idm_acceleration, project_onto_path
from spacer_jax.sim.datatypes import TIMESTEP_SECONDS, SimulatorState


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
    check_positive(self, ('base_speed', 'exponent', 'lookahead_distance',
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
    """IDM acceleration (m/s^2), elementwise, clipped to ``[-max_decel, a_max]``.

    The simulator's formula (:func:`spacer_jax.sim.agents.idm.idm_acceleration`, shared
    with the IDM sim agent) with v0 floored at 0.1 m/s, as the formula divides by it.
    """
    accel = idm_acceleration(
        speed, jnp.maximum(desired_speed, 0.1), gap, lead_speed, has_leader,
        max_accel=params.max_accel, comfortable_decel=params.comfortable_decel,
        min_gap=params.min_gap, time_headway=params.time_headway, exponent=self.exponent,
        min_gap_floor=self.min_gap_floor)
    return jnp.clip(accel, -self.max_decel, params.max_accel)

  def find_leader(self, state: SimulatorState, route: Route, s: jax.Array, ego: EgoNow
                  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Nearest valid non-SDC object in the SDC's corridor ahead (class doc).

    Returns ``(has_leader, gap, lead_speed)``, each ``(..., 1)``: bumper-to-bumper gap
    along the route (m) and the leader's velocity along the route (>= 0, m/s: an
    oncoming or crossing object is an obstacle, not a faster leader).
    """
    (x, y, yaw, vx, vy, length, width), others = other_objects(state)
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
  sweep = parameter_sweep(IDM_GRID_ENDPOINTS, n, 'idm_planner_grid')
  planner = planner or IDMPlanner()
  return {f'idm_{i}': (planner, IDMParams.create(**values))
          for i, values in enumerate(sweep)}
