"""Planar geometry used throughout the simulator: angles, frames and boxes.

All functions broadcast over leading dimensions and work under jit and vmap.
Angles are radians, counter-clockwise from the world +x axis; distances in metres.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def smallest_k(values: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """The ``k`` smallest entries of the last axis, ascending: ``(values, indices)``, both
  ``(..., k)``; ``indices`` int32.

  Each output passes its own ``optimization_barrier``: without one XLA:CPU rewrites
  ``top_k`` followed by a slice into a full sort (many times slower on long axes), and
  one barrier on the pair folds onto top_k's tuple, which XLA:CPU's TopK decomposer
  then rejects inside ``shard_map``.
  """
  neg, idx = jax.lax.top_k(-values, k)
  return -jax.lax.optimization_barrier(neg), jax.lax.optimization_barrier(idx)


def wrap_angle(angle: jax.Array) -> jax.Array:
  """Wraps angles to [-pi, pi)."""
  return (angle + jnp.pi) % (2 * jnp.pi) - jnp.pi


def cross2(a: jax.Array, b: jax.Array) -> jax.Array:
  """z-component of the cross product of 2D vectors ``(..., 2)``: a_x b_y - a_y b_x."""
  return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def rotate(xy: jax.Array, angle: jax.Array) -> jax.Array:
  """Rotates points ``(..., 2)`` counter-clockwise by ``angle`` ``(...)``."""
  c, s = jnp.cos(angle), jnp.sin(angle)
  x, y = xy[..., 0], xy[..., 1]
  return jnp.stack([c * x - s * y, s * x + c * y], axis=-1)


def world_to_local(xy: jax.Array, origin_xy: jax.Array, origin_yaw: jax.Array
                   ) -> jax.Array:
  """Expresses world points ``(..., 2)`` in a frame at ``origin_xy`` facing ``origin_yaw``.

  ``origin_xy`` is ``(..., 2)`` and ``origin_yaw`` ``(...)``, broadcastable to ``xy``.
  """
  return rotate(xy - origin_xy, -origin_yaw)


def local_to_world(xy: jax.Array, origin_xy: jax.Array, origin_yaw: jax.Array
                   ) -> jax.Array:
  """Inverse of :func:`world_to_local`."""
  return rotate(xy, origin_yaw) + origin_xy


def box_corners(x: jax.Array, y: jax.Array, length: jax.Array, width: jax.Array,
                yaw: jax.Array) -> jax.Array:
  """Corners of rotated boxes, ``(..., 4, 2)``.

  Order: front-right, front-left, rear-left, rear-right (counter-clockwise), as in
  Waymax.
  """
  half_l, half_w = length / 2, width / 2
  local = jnp.stack([
      jnp.stack([half_l, -half_w], -1),
      jnp.stack([half_l, half_w], -1),
      jnp.stack([-half_l, half_w], -1),
      jnp.stack([-half_l, -half_w], -1),
  ], axis=-2)
  return rotate(local, yaw[..., None]) + jnp.stack([x, y], -1)[..., None, :]


def box_pair_margins(xi, yi, li, wi, hi, xj, yj, lj, wj, hj) -> jax.Array:
  """Separating-axis margins of boxes i and j, elementwise over broadcast inputs.

  Boxes: centre (m), full length / width (m), heading (rad). Returns ``(..., 4)``: the
  overlap of the two projections on i's heading axis, i's lateral axis, j's heading
  axis and j's lateral axis (negative: a gap). The boxes overlap iff all four are > 0.
  """
  ci, si, cj, sj = jnp.cos(hi), jnp.sin(hi), jnp.cos(hj), jnp.sin(hj)
  abs_c, abs_s = jnp.abs(ci * cj + si * sj), jnp.abs(ci * sj - si * cj)
  dx, dy = xj - xi, yj - yi
  ai, bi, aj, bj = li / 2, wi / 2, lj / 2, wj / 2
  return jnp.stack([
      ai + aj * abs_c + bj * abs_s - jnp.abs(dx * ci + dy * si),
      bi + aj * abs_s + bj * abs_c - jnp.abs(-dx * si + dy * ci),
      aj + ai * abs_c + bi * abs_s - jnp.abs(dx * cj + dy * sj),
      bj + ai * abs_s + bi * abs_c - jnp.abs(-dx * sj + dy * cj),
  ], axis=-1)
