"""The Frenet sampling ego planner and its cautious-to-assertive family."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from spacer_jax.eval.features import box_signed_distance
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
from spacer_jax.eval.planners.scene import (
  EgoNow,
  ego_now,
  other_objects,
  sdc_index,
  take_object,
)
from spacer_jax.eval.planners.stops import StopRules
from spacer_jax.sim import geometry
from spacer_jax.sim.agents.idm import project_onto_path
from spacer_jax.sim.datatypes import TIMESTEP_SECONDS, SimulatorState
from spacer_jax.sim.metrics import road_edges


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
  route, red lights) count as obstacles at the stop line, measured along the route from
  the front bumper at every sample (swept: no speed passes one). The cheapest
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
    check_positive(self, ('base_speed', 'horizon', 'num_samples', 'lateral_time',
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

    (x, y, oyaw, vx, vy, length, width), others = other_objects(state)
    pred = lambda p, v: p[..., None, :] + v[..., None, :] * t[:, None]  # (..., K, N)
    ox, oy = pred(x, vx), pred(y, vy)
    ego_dims = lambda a: a[..., None, None]  # (..., 1) -> (..., 1, 1, 1)
    dist = box_signed_distance(
        xy[..., 0][..., None], xy[..., 1][..., None], ego_dims(ego.length),
        ego_dims(ego.width), yaw[..., None],
        ox[..., None, :, :], oy[..., None, :, :], length[..., None, None, :],
        width[..., None, None, :], oyaw[..., None, None, :])  # (..., C, K, N)
    dist = jnp.min(jnp.where(others[..., None, None, :], dist, jnp.inf), axis=-1)
    # Stops (route end, red lights) are measured along the route: the gap from the front
    # bumper to each active stop arc. The travelled arc never decreases, so a sample
    # after the stop line still sees a negative gap: no speed can jump a stop between
    # two samples (a 1 m wall checked every 0.2 s could be passed above 5 m/s).
    stop_arc, stop_on = self.stop_rules.stops(state, route, c.s0, ego)
    front = c.s0[..., None] + sigma + 0.5 * ego.length[..., None]  # (..., C, K)
    gap = jnp.where(stop_on[..., None, None, :],
                    stop_arc[..., None, None, :] - front[..., None], jnp.inf)
    dist = jnp.minimum(dist, jnp.min(gap, axis=-1))
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
  sweep = parameter_sweep(FRENET_FAMILY_ENDPOINTS, n, 'frenet_planner_family')
  planner = planner or FrenetPlanner()
  names = (['cautious', 'nominal', 'assertive'] if n == 3
           else [f'frenet_{i}' for i in range(n)])
  return {name: (planner, FrenetParams.create(**values))
          for name, values in zip(names, sweep)}
