"""WOSAC per-agent, per-step features: kinematics and interactions.

Definitions follow the official sim-agents evaluator (``shared/specs/wosac.md``); the
simulator's own metrics (``spacer_jax/sim/metrics``) use different rules where noted,
so the WOSAC versions live here:

* **Kinematics** use *central* differences at 10 Hz over the whole 91-step trajectory
  (history included): ``v_t = |p_{t+1} - p_{t-1}| / (2 dt)`` in 3D,
  ``a_t = (v_{t+1} - v_{t-1}) / (2 dt)``; angular speed ``wrap(h_{t+1} - h_{t-1}) /
  (2 dt)`` and angular acceleration ``wrap(w'_{t+1} - w'_{t-1}) / (2 dt^2)`` with ``w'``
  the per-step heading change. The first and last step (two for accelerations) are NaN.
  Validity of the logged values: both neighbours valid (twice for accelerations),
  computed on the 80 future steps only, so the first future step never counts.
* **distance_to_nearest_object**: signed 2D distance between *rounded* boxes. Each box
  is shrunk by ``s = 0.7 min(l, w) / 2`` on every side (its "core"), the core-to-core
  signed distance is taken (Euclidean gap, or minus the penetration depth) and
  ``s_i + s_j`` subtracted. ``sim.metrics.interaction`` uses sharp boxes instead.
  Only pairs valid at that step count; 1e10 when there is no other valid object.
  Collision: that distance < 0.
* **time_to_collision**: for an evaluated box, every other valid box whose rear-most
  point is ahead of its front (``long > 0``), that overlaps its lateral band
  (``lat < 0``), and whose *unwrapped* heading difference ``|h_j - h_i|`` is at most
  75 deg (10 deg unless the lateral overlap exceeds 0.5 m) is a candidate; the nearest
  candidate ahead is the leader and ``TTC = min(gap / (v_i - v_j), 5)`` when closing,
  else 5 s. Speeds are planar central differences. ``sim.metrics.interaction`` takes
  the minimum over all leaders, wraps the heading difference and uses logged
  velocities, so it differs.

All functions are pure and broadcast over leading dims; trajectories are ``(..., N, T)``
and evaluated objects are picked with ``eval_index`` ``(..., E)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim import geometry
from spacer_jax.sim.datatypes import TIMESTEP_SECONDS

CORNER_ROUNDING_FACTOR = 0.7  # corner radius = factor * min(length, width) / 2
FAR_DISTANCE = 1e10  # metres, stands for "no other valid object"
MAX_TTC_SECONDS = 5.0
TTC_MAX_HEADING_DIFF = math.radians(75.0)
TTC_MAX_HEADING_DIFF_SMALL_OVERLAP = math.radians(10.0)
TTC_SMALL_OVERLAP = 0.5  # metres of lateral overlap below which the 10 deg rule applies


@struct.dataclass
class Kinematics:
  """Central-difference kinematics, each ``(..., T)``; NaN where undefined.

  Attributes:
    linear_speed: m/s (3D). linear_acceleration: m/s^2.
    angular_speed: rad/s. angular_acceleration: rad/s^2.
  """

  linear_speed: jax.Array
  linear_acceleration: jax.Array
  angular_speed: jax.Array
  angular_acceleration: jax.Array


def central_difference(values: jax.Array) -> jax.Array:
  """``(v[t+1] - v[t-1]) / 2`` along the last axis, NaN at both ends."""
  pad = jnp.full(values.shape[:-1] + (1,), jnp.nan, values.dtype)
  return jnp.concatenate([pad, (values[..., 2:] - values[..., :-2]) / 2, pad], axis=-1)


def central_and(valid: jax.Array) -> jax.Array:
  """``valid[t-1] & valid[t+1]`` along the last axis, False at both ends."""
  pad = jnp.zeros(valid.shape[:-1] + (1,), bool)
  return jnp.concatenate([pad, valid[..., 2:] & valid[..., :-2], pad], axis=-1)


def kinematic_features(x: jax.Array, y: jax.Array, z: jax.Array, yaw: jax.Array,
                       dt: float = TIMESTEP_SECONDS) -> Kinematics:
  """Speeds and accelerations from positions (m) and headings (rad), ``(..., T)``."""
  dpos = jnp.stack([central_difference(v) for v in (x, y, z)], axis=-1)
  speed = jnp.linalg.norm(dpos, axis=-1) / dt
  accel = central_difference(speed) / dt
  # Wrapping twice the half-difference picks the acute solution of the 2-step change.
  dh_step = geometry.wrap_angle(central_difference(yaw) * 2) / 2
  d2h_step = geometry.wrap_angle(central_difference(dh_step) * 2) / 2
  return Kinematics(linear_speed=speed, linear_acceleration=accel,
                    angular_speed=dh_step / dt, angular_acceleration=d2h_step / dt**2)


def kinematic_validity(valid: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Validity of speeds and of accelerations given step validity ``(..., T)``."""
  speed_valid = central_and(valid)
  return speed_valid, central_and(speed_valid)


def planar_speed(x: jax.Array, y: jax.Array, dt: float = TIMESTEP_SECONDS) -> jax.Array:
  """Planar central-difference speed (m/s), ``(..., T)``, NaN at both ends."""
  return jnp.hypot(central_difference(x), central_difference(y)) / dt


def box_signed_distance(xa, ya, la, wa, ha, xb, yb, lb, wb, hb) -> jax.Array:
  """Signed distance (m) between rectangles a and b; all inputs broadcast together.

  Each box: centre ``(x, y)``, full length ``l`` along heading ``h``, full width ``w``.
  Apart: the Euclidean gap (for convex polygons the nearest pair involves a corner of
  one of them). Overlapping: minus the penetration depth, the smallest overlap of the
  two projections over the four separating axes. Written as flat elementwise algebra
  (corners unrolled) so that XLA fuses it into one loop over the pairs.
  """
  ca, sa, cb, sb = jnp.cos(ha), jnp.sin(ha), jnp.cos(hb), jnp.sin(hb)
  hla, hwa, hlb, hwb = la / 2, wa / 2, lb / 2, wb / 2
  dx, dy = xb - xa, yb - ya
  cos_ab, sin_ab = ca * cb + sa * sb, ca * sb - sa * cb  # rotation from a to b
  abs_c, abs_s = jnp.abs(cos_ab), jnp.abs(sin_ab)
  bx, by = dx * ca + dy * sa, -dx * sa + dy * ca  # b's centre in a's frame
  ax, ay = -(dx * cb + dy * sb), dx * sb - dy * cb  # a's centre in b's frame
  depth = jnp.minimum(
      jnp.minimum(hla + hlb * abs_c + hwb * abs_s - jnp.abs(bx),
                  hwa + hlb * abs_s + hwb * abs_c - jnp.abs(by)),
      jnp.minimum(hlb + hla * abs_c + hwa * abs_s - jnp.abs(ax),
                  hwb + hla * abs_s + hwa * abs_c - jnp.abs(ay)))

  def corner_gap2(cx, cy, c, s, hl, hw, ref_hl, ref_hw):
    # Squared distance from the 4 corners of one box (centre (cx, cy) and rotation
    # (c, s) in the other's frame) to the other box, minimised over the corners.
    best = None
    for ux, uy in ((1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)):
      px = cx + c * hl * ux - s * hw * uy
      py = cy + s * hl * ux + c * hw * uy
      gx = jnp.maximum(jnp.abs(px) - ref_hl, 0.0)
      gy = jnp.maximum(jnp.abs(py) - ref_hw, 0.0)
      gap = gx * gx + gy * gy
      best = gap if best is None else jnp.minimum(best, gap)
    return best

  apart = jnp.sqrt(jnp.minimum(corner_gap2(bx, by, cos_ab, sin_ab, hlb, hwb, hla, hwa),
                               corner_gap2(ax, ay, cos_ab, -sin_ab, hla, hwa, hlb, hwb)))
  return jnp.where(depth > 0, -depth, apart)


def rounded_box_signed_distance(xa, ya, la, wa, ha, xb, yb, lb, wb, hb,
                                rounding: float = CORNER_ROUNDING_FACTOR) -> jax.Array:
  """Signed distance (m) between boxes with corners rounded by ``rounding``.

  A rounded box is the set of points within ``s = rounding * min(l, w) / 2`` of its
  core rectangle ``(l - 2 s, w - 2 s)``, so the distance is the cores' minus both radii.
  """
  s_a = rounding * jnp.minimum(la, wa) / 2
  s_b = rounding * jnp.minimum(lb, wb) / 2
  core = box_signed_distance(xa, ya, la - 2 * s_a, wa - 2 * s_a, ha,
                             xb, yb, lb - 2 * s_b, wb - 2 * s_b, hb)
  return core - s_a - s_b


def take_objects(values: jax.Array, eval_index: jax.Array) -> jax.Array:
  """Rows ``eval_index`` ``(..., E)`` of ``values`` ``(..., N, T)`` -> ``(..., E, T)``."""
  return jnp.take_along_axis(values, eval_index[..., :, None], axis=-2)


def distance_to_nearest_object(x, y, length, width, yaw, valid, eval_index) -> jax.Array:
  """Rounded-box signed distance of each evaluated object to its nearest other object.

  Args:
    x, y, length, width, yaw: ``(..., N, T)`` boxes of all simulated objects.
    valid: ``(..., N, T)`` bool; a pair counts only where both boxes are valid.
    eval_index: ``(..., E)`` int, rows of the evaluated objects.

  Returns:
    ``(..., E, T)`` metres; ``FAR_DISTANCE`` (1e10) where no pair is valid.
  """
  n = x.shape[-2]
  ev = [take_objects(v, eval_index)[..., :, None, :] for v in (x, y, length, width, yaw)]
  al = [v[..., None, :, :] for v in (x, y, length, width, yaw)]
  d = rounded_box_signed_distance(*ev, *al)  # (..., E, N, T)
  pair_ok = take_objects(valid, eval_index)[..., :, None, :] & valid[..., None, :, :]
  not_self = (eval_index[..., :, None] != jnp.arange(n))[..., None]
  return jnp.min(jnp.where(pair_ok & not_self, d, FAR_DISTANCE), axis=-2)


def time_to_collision(x, y, length, width, yaw, speed, valid, eval_index) -> jax.Array:
  """Seconds until each evaluated object reaches the object it follows (module doc).

  Args:
    x, y, length, width, yaw: ``(..., N, T)`` boxes of all simulated objects.
    speed: ``(..., N, T)`` m/s (planar central difference; NaN gives 5 s).
    valid: ``(..., N, T)`` bool; only valid *other* objects can be followed.
    eval_index: ``(..., E)`` int.

  Returns:
    ``(..., E, T)`` seconds in ``[0, 5]``.
  """
  ex, ey, el, ew, eh, es = (take_objects(v, eval_index)[..., :, None, :]
                            for v in (x, y, length, width, yaw, speed))
  ox, oy, ol, ow, oh, os_ = (v[..., None, :, :] for v in (x, y, length, width, yaw, speed))
  yaw_diff = jnp.abs(oh - eh)  # deliberately not wrapped (the evaluator's rule)
  abs_cos, abs_sin = jnp.abs(jnp.cos(yaw_diff)), jnp.abs(jnp.sin(yaw_diff))
  long_offset = ol / 2 * abs_cos + ow / 2 * abs_sin
  lat_offset = ol / 2 * abs_sin + ow / 2 * abs_cos
  dx, dy = ox - ex, oy - ey
  ce, se = jnp.cos(eh), jnp.sin(eh)
  long_gap = dx * ce + dy * se - el / 2 - long_offset
  lat_overlap = jnp.abs(-dx * se + dy * ce) - ew / 2 - lat_offset
  following = ((long_gap > 0) & (yaw_diff <= TTC_MAX_HEADING_DIFF) & (lat_overlap < 0)
               & ((lat_overlap < -TTC_SMALL_OVERLAP)
                  | (yaw_diff <= TTC_MAX_HEADING_DIFF_SMALL_OVERLAP)))
  following = following & valid[..., None, :, :]
  gap = jnp.where(following, long_gap, jnp.inf)
  leader = jnp.argmin(gap, axis=-2)[..., None, :]  # (..., E, 1, T)
  lead_gap = jnp.take_along_axis(gap, leader, axis=-2)[..., 0, :]
  lead_speed = jnp.take_along_axis(jnp.broadcast_to(os_, gap.shape), leader, axis=-2)
  closing = es[..., 0, :] - lead_speed[..., 0, :]
  has = jnp.any(following, axis=-2) & (closing > 0)
  ttc = jnp.minimum(lead_gap / jnp.where(has, closing, 1.0), MAX_TTC_SECONDS)
  return jnp.where(has, ttc, MAX_TTC_SECONDS)
