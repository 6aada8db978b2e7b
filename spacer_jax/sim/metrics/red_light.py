"""Red-light violation: a vehicle crossing the stop point of its lane on red.

Rule (per vehicle i and signal l at the current step t):

1. Signal l is red (STOP or ARROW_STOP) and valid at t; its ``(x, y)`` is the stop
   point s_l and its ``lane_ids`` the controlled lane's polyline id.
2. The lane direction u_l is the ``dir`` of the controlled lane's point nearest s_l.
3. The vehicle's position p_t (centre at t) has its nearest lane-centre point (types
   0-3, valid) on the controlled lane.
4. It crossed the stop point: ``(p_{t-1} - s_l) . u_l <= 0 < (p_t - s_l) . u_l``.

The value is 1.0 when any signal is violated. Valid where the object is a vehicle,
valid at t and t-1, and t >= 1. Only vehicles within ``SEARCH_RADIUS`` of the stop point
at t are considered (a vehicle that just crossed a stop point on its own lane is a few
metres from it).

Cost: the nearest lane point of every vehicle would cost ``N x P``. Steps 1, 2 and 4
are cheap (``O(L P)`` and ``O(N L)``), so they run first; step 3 then runs only for up
to ``MAX_CROSSINGS`` (vehicle, signal) pairs that pass them (a red-light crossing in a
single 0.1 s step is rare; pairs beyond the cap are dropped): ``O(MAX_CROSSINGS P)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spacer_jax.sim.batching import map_leading_dims
from spacer_jax.sim.datatypes import (
  ObjectType,
  SimulatorState,
  is_lane,
  is_red,
  slice_time,
)
from spacer_jax.sim.metrics.base import MetricResult

SEARCH_RADIUS = 10.0  # m around each stop point.
MAX_CROSSINGS = 4  # (vehicle, signal) pairs checked against every lane point per step.


def _single(p_now, p_prev, ok, tl, rg):
  """One scenario: p_* ``(N, 2)``, ok ``(N,)``; tl fields ``(L,)``; rg ``(P,)``."""
  num_lights = tl.x.shape[-1]
  lane = rg.valid & is_lane(rg.types)
  stop = jnp.stack([tl.x, tl.y], -1)  # (L, 2)
  d = jnp.hypot(rg.x[None, :] - stop[:, 0:1], rg.y[None, :] - stop[:, 1:2])  # (L, P)
  own = lane[None, :] & (rg.ids[None, :] == tl.lane_ids[:, None])
  own_idx = jnp.argmin(jnp.where(own, d, jnp.inf), axis=-1)
  u = jnp.stack([rg.dir_x[own_idx], rg.dir_y[own_idx]], -1)  # (L, 2)
  red = tl.valid & is_red(tl.state) & jnp.any(own, axis=-1)

  s_now = jnp.sum((p_now[:, None, :] - stop[None]) * u[None], -1)  # (N, L)
  s_prev = jnp.sum((p_prev[:, None, :] - stop[None]) * u[None], -1)
  near = jnp.linalg.norm(p_now[:, None, :] - stop[None], axis=-1) < SEARCH_RADIUS
  crossing = red[None] & ok[:, None] & near & (s_prev <= 0) & (s_now > 0)

  # Nearest lane point (over the whole roadgraph) for the few crossing pairs only.
  flat = crossing.reshape(-1)
  (pair,) = jnp.nonzero(flat, size=MAX_CROSSINGS, fill_value=0)
  pair_ok = flat[pair]
  obj, light = pair // num_lights, pair % num_lights
  dp = jnp.hypot(rg.x[None, :] - p_now[obj, 0:1], rg.y[None, :] - p_now[obj, 1:2])
  nearest = jnp.argmin(jnp.where(lane[None, :], dp, jnp.inf), axis=-1)
  violated = pair_ok & (rg.ids[nearest] == tl.lane_ids[light])
  return jnp.zeros(p_now.shape[0], bool).at[obj].max(violated)


def red_light_violation(state: SimulatorState) -> MetricResult:
  """1.0 where a vehicle ran a red light between t-1 and t (see the module docstring).

  Returns:
    :class:`MetricResult` ``(..., num_objects)``.
  """
  t = state.timestep
  now = state.current_sim_trajectory
  prev = slice_time(state.sim_trajectory, jnp.maximum(t - 1, 0), 1)
  valid = (now.valid[..., 0] & prev.valid[..., 0] & (t >= 1)[..., None]
           & (state.object_metadata.object_types == ObjectType.VEHICLE))
  tl = jax.tree_util.tree_map(lambda a: a[..., 0], state.current_traffic_light)
  value = map_leading_dims(_single, len(state.shape))(
      now.xy[..., 0, :], prev.xy[..., 0, :], valid, tl, state.roadgraph_points)
  return MetricResult.create(value, valid)
