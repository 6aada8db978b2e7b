"""Where the planners stop on their own: the end of the route and red lights."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from spacer_jax.eval.planners.route import Route, route_pose
from spacer_jax.eval.planners.scene import EgoNow
from spacer_jax.sim.agents.idm import project_onto_path
from spacer_jax.sim.datatypes import SimulatorState, is_red


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
