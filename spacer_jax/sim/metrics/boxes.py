"""Pairwise geometry of 2D rotated boxes (separating axes, signed distance).

A box is ``(x, y, length, width, yaw)``: centre in metres, full length along the
heading, full width across it, heading in radians. All functions take ``(..., N)``
arrays and return ``(..., N, N)`` pair quantities, entry ``[i, j]`` for box i against
box j; they broadcast over leading dims and are jit/vmap-safe (no Python loops).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spacer_jax.sim import geometry


def sat_margins(x: jax.Array, y: jax.Array, length: jax.Array, width: jax.Array,
                yaw: jax.Array) -> jax.Array:
  """Overlap of the two boxes' projections on each separating axis, ``(..., N, N, 4)``.

  Axis order: box i's heading, box i's lateral axis, box j's heading, box j's lateral
  axis. On an axis with unit vector u the margin is ``r_i + r_j - |(c_j - c_i) . u|``,
  ``r`` being each box's projected half-extent, so it is the length over which the two
  projections overlap (negative: a gap). The boxes overlap iff all four margins are
  strictly positive (touching, margin 0, is not an overlap); then the smallest margin
  is the penetration depth.
  """
  c, s = jnp.cos(yaw), jnp.sin(yaw)
  a, b = length / 2, width / 2  # Half extents along each box's own axes.
  ci, si, ai, bi = c[..., :, None], s[..., :, None], a[..., :, None], b[..., :, None]
  cj, sj, aj, bj = c[..., None, :], s[..., None, :], a[..., None, :], b[..., None, :]
  dx = x[..., None, :] - x[..., :, None]
  dy = y[..., None, :] - y[..., :, None]
  # |cos| and |sin| of the relative heading: the projected extents of a box on the
  # other's axes.
  cos_d = jnp.abs(ci * cj + si * sj)
  sin_d = jnp.abs(ci * sj - si * cj)
  m_ui = ai + aj * cos_d + bj * sin_d - jnp.abs(dx * ci + dy * si)
  m_vi = bi + aj * sin_d + bj * cos_d - jnp.abs(-dx * si + dy * ci)
  m_uj = aj + ai * cos_d + bi * sin_d - jnp.abs(dx * cj + dy * sj)
  m_vj = bj + ai * sin_d + bi * cos_d - jnp.abs(-dx * sj + dy * cj)
  return jnp.stack([m_ui, m_vi, m_uj, m_vj], axis=-1)


def pairwise_overlap(x, y, length, width, yaw) -> jax.Array:
  """``(..., N, N)`` bool, boxes i and j overlap by a strictly positive margin."""
  return jnp.min(sat_margins(x, y, length, width, yaw), axis=-1) > 0


def corners_in_frames(x, y, length, width, yaw) -> jax.Array:
  """Corners of every box j in the frame of every box i: ``(..., N_i, N_j, 4, 2)``."""
  corners = geometry.box_corners(x, y, length, width, yaw)  # (..., N, 4, 2)
  return geometry.world_to_local(corners[..., None, :, :, :],
                                 jnp.stack([x, y], -1)[..., :, None, None, :],
                                 yaw[..., :, None, None])


def pairwise_signed_distance(x, y, length, width, yaw) -> jax.Array:
  """Signed distance between boxes, ``(..., N, N)`` metres, symmetric.

  Apart: the Euclidean distance between the two rectangles, i.e. the smallest distance
  from a corner of one to the other rectangle (for convex polygons the closest pair
  always involves a vertex); a corner's distance to a rectangle is
  ``|max(|p_local| - half_extent, 0)|`` in that rectangle's frame. Overlapping: minus
  the penetration depth (the smallest separating-axis margin).
  """
  overlap_depth = jnp.min(sat_margins(x, y, length, width, yaw), axis=-1)
  local = corners_in_frames(x, y, length, width, yaw)
  half = jnp.stack([length / 2, width / 2], -1)[..., :, None, None, :]
  outside = jnp.maximum(jnp.abs(local) - half, 0.0)
  d_ji = jnp.min(jnp.linalg.norm(outside, axis=-1), axis=-1)  # corners of j to box i
  apart = jnp.minimum(d_ji, jnp.swapaxes(d_ji, -1, -2))
  return jnp.where(overlap_depth > 0, -overlap_depth, apart)
