"""Interaction metrics: distance to the nearest object and time to collision."""

from __future__ import annotations

import math

import jax.numpy as jnp

from spacer_jax.sim import geometry
from spacer_jax.sim.datatypes import SimulatorState
from spacer_jax.sim.metrics import boxes
from spacer_jax.sim.metrics.base import MetricResult

MAX_TTC_SECONDS = 5.0  # TTC is capped here; also the value when nothing is ahead.
MAX_HEADING_DIFF = math.radians(75.0)  # Objects ahead must head within this of ours.
_FAR = 1e6  # Stand-in distance when no other object is valid (the result is invalid).


def _current_boxes(state: SimulatorState):
  t = state.current_sim_trajectory
  return tuple(f[..., 0] for f in (t.x, t.y, t.length, t.width, t.yaw, t.vel_x, t.vel_y,
                                   t.valid))


def distance_to_nearest_object(state: SimulatorState) -> MetricResult:
  """Signed 2D distance (m) from each box to the nearest other valid box.

  Apart boxes: Euclidean distance between the rectangles. Overlapping boxes: minus the
  penetration depth (smallest separating-axis overlap). The minimum over the other
  valid objects at ``state.timestep``.

  Returns:
    :class:`MetricResult` ``(..., num_objects)``, valid where the object is valid and
    at least one other object is.
  """
  x, y, length, width, yaw, _, _, valid = _current_boxes(state)
  d = boxes.pairwise_signed_distance(x, y, length, width, yaw)
  n = x.shape[-1]
  other = valid[..., None, :] & ~jnp.eye(n, dtype=bool)
  nearest = jnp.min(jnp.where(other, d, _FAR), axis=-1)
  return MetricResult.create(nearest, valid & jnp.any(other, axis=-1))


def time_to_collision(state: SimulatorState) -> MetricResult:
  """Seconds until the box hits the object ahead at constant speeds, capped at 5 s.

  Rule, for object i with heading ``yaw_i`` (box yaw) and speed ``v_i = |vel_i|``,
  working in i's frame (x forward, y left):

  * Candidates: other valid objects j with ``|wrap(yaw_j - yaw_i)| <= 75 deg``.
  * Lateral band: j's box corners span ``[y_min, y_max]`` laterally; j counts only if
    that interval overlaps i's half-width band ``(-w_i/2, w_i/2)`` strictly.
  * Ahead: j's centre has positive forward coordinate. The gap is
    ``max(x_min(j corners) - l_i / 2, 0)`` (0: already touching or overlapping).
  * Each object keeps its speed along its own heading, so the closing speed is
    ``v_i - v_j cos(yaw_j - yaw_i)``. ``TTC_ij = gap / closing`` when closing > 0
    (0 when the gap is 0), otherwise no collision.
  * ``TTC_i = min(5, min_j TTC_ij)``; 5.0 when nothing qualifies.

  Returns:
    :class:`MetricResult` ``(..., num_objects)`` in seconds, valid where the object is.
  """
  x, y, length, width, yaw, vx, vy, valid = _current_boxes(state)
  n = x.shape[-1]
  speed = jnp.hypot(vx, vy)
  local = boxes.corners_in_frames(x, y, length, width, yaw)  # (..., N_i, N_j, 4, 2)
  lat_lo, lat_hi = jnp.min(local[..., 1], -1), jnp.max(local[..., 1], -1)
  half_w = (width / 2)[..., :, None]
  in_band = (lat_lo < half_w) & (lat_hi > -half_w)
  rel = geometry.world_to_local(jnp.stack([x, y], -1)[..., None, :, :],
                                jnp.stack([x, y], -1)[..., :, None, :], yaw[..., :, None])
  ahead = rel[..., 0] > 0
  dyaw = geometry.wrap_angle(yaw[..., None, :] - yaw[..., :, None])
  aligned = jnp.abs(dyaw) <= MAX_HEADING_DIFF
  gap = jnp.maximum(jnp.min(local[..., 0], -1) - (length / 2)[..., :, None], 0.0)
  closing = speed[..., :, None] - speed[..., None, :] * jnp.cos(dyaw)
  ttc = jnp.where(gap <= 0, 0.0, gap / jnp.where(closing > 0, closing, 1.0))
  hits = ((gap <= 0) | (closing > 0)) & in_band & ahead & aligned
  hits = hits & valid[..., None, :] & ~jnp.eye(n, dtype=bool)
  ttc = jnp.min(jnp.where(hits, ttc, MAX_TTC_SECONDS), axis=-1)
  return MetricResult.create(jnp.minimum(ttc, MAX_TTC_SECONDS), valid)
