"""Last line of defence for clean logs: finds box overlaps between agents.

The traffic model avoids collisions by construction, but rare corner cases (two
agents committing to a crossing in the same step) can remain; the assembler drops
one agent of every overlapping pair so logs stay collision-free (unless
``collision_noise_rate`` asks to keep one).
"""

from __future__ import annotations

import numpy as np


def box_corners(x, y, length, width, yaw) -> np.ndarray:
  """Corners ``(..., 4, 2)``: front-right, front-left, rear-left, rear-right."""
  c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
  lx = np.array([0.5, 0.5, -0.5, -0.5]) * length[..., None]
  ly = np.array([-0.5, 0.5, 0.5, -0.5]) * width[..., None]
  return np.stack([x[..., None] + c * lx - s * ly, y[..., None] + s * lx + c * ly], -1)


def overlapping_pairs(x: np.ndarray, y: np.ndarray, yaw: np.ndarray, length: np.ndarray,
                      width: np.ndarray, valid: np.ndarray, margin: float = 0.0
                      ) -> np.ndarray:
  """Agent pairs ``(P, 2)`` (i < j) whose boxes overlap at some step.

  Args:
    x, y, yaw, valid: ``(A, T)``; length, width: ``(A,)`` in m.
    margin: boxes are inflated by this much (m) on every side.
  Separating-axis test on the 4 box axes, only for pairs whose bounding circles meet.
  """
  a, t = x.shape
  rad = 0.5 * np.hypot(length, width) + margin
  dx = x[:, None, :] - x[None, :, :]
  dy = y[:, None, :] - y[None, :, :]
  near = (dx**2 + dy**2 < (rad[:, None] + rad[None, :])[..., None] ** 2)
  near &= valid[:, None, :] & valid[None, :, :]
  near &= np.triu(np.ones((a, a), bool), 1)[..., None]
  ii, jj, tt = np.nonzero(near)
  if len(ii) == 0:
    return np.zeros((0, 2), np.int64)
  L, W = length + 2 * margin, width + 2 * margin
  ci = box_corners(x[ii, tt], y[ii, tt], L[ii], W[ii], yaw[ii, tt])
  cj = box_corners(x[jj, tt], y[jj, tt], L[jj], W[jj], yaw[jj, tt])
  sep = np.zeros(len(ii), bool)
  for yaw_axis in (yaw[ii, tt], yaw[jj, tt]):
    for ang in (yaw_axis, yaw_axis + np.pi / 2):
      ax = np.stack([np.cos(ang), np.sin(ang)], -1)[:, None, :]
      pi = (ci * ax).sum(-1)
      pj = (cj * ax).sum(-1)
      sep |= (pi.max(1) <= pj.min(1)) | (pj.max(1) <= pi.min(1))
  hit = ~sep
  return np.unique(np.stack([ii[hit], jj[hit]], 1), axis=0)
