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
  Separating-axis test on the 4 box axes, only for pairs whose bounding circles meet
  at that step and whose whole tracks' bounding boxes meet.
  """
  rad = 0.5 * np.hypot(length, width) + margin
  # Candidate pairs: bounding boxes of the whole (inflated) tracks meet. Cheap (A, A)
  # work that leaves far fewer pairs for the per-step test.
  x0 = np.where(valid, x, np.inf).min(axis=1) - rad   # inf for agents never seen
  x1 = np.where(valid, x, -np.inf).max(axis=1) + rad
  y0 = np.where(valid, y, np.inf).min(axis=1) - rad
  y1 = np.where(valid, y, -np.inf).max(axis=1) + rad
  meet = ((x0[:, None] <= x1[None, :]) & (x0[None, :] <= x1[:, None])
          & (y0[:, None] <= y1[None, :]) & (y0[None, :] <= y1[:, None]))
  pi, pj = np.nonzero(np.triu(meet, 1))
  if len(pi) == 0:
    return np.zeros((0, 2), np.int64)
  dx = x[pi] - x[pj]
  dy = y[pi] - y[pj]
  near = (dx**2 + dy**2 < ((rad[pi] + rad[pj]) ** 2)[:, None]) & valid[pi] & valid[pj]
  pp, tt = np.nonzero(near)
  if len(pp) == 0:
    return np.zeros((0, 2), np.int64)
  ii, jj = pi[pp], pj[pp]
  L, W = length + 2 * margin, width + 2 * margin
  ci = box_corners(x[ii, tt], y[ii, tt], L[ii], W[ii], yaw[ii, tt])
  cj = box_corners(x[jj, tt], y[jj, tt], L[jj], W[jj], yaw[jj, tt])
  sep = np.zeros(len(ii), bool)
  for yaw_axis in (yaw[ii, tt], yaw[jj, tt]):
    for ang in (yaw_axis, yaw_axis + np.pi / 2):
      ax = np.stack([np.cos(ang), np.sin(ang)], -1)[:, None, :]
      proj_i = (ci * ax).sum(-1)
      proj_j = (cj * ax).sum(-1)
      sep |= (proj_i.max(1) <= proj_j.min(1)) | (proj_j.max(1) <= proj_i.min(1))
  hit = ~sep
  return np.unique(np.stack([ii[hit], jj[hit]], 1), axis=0)


def box_overlap(ca: np.ndarray, cb: np.ndarray) -> np.ndarray:
  """Whether boxes ``(..., 4, 2)`` overlap by a positive margin on all 4 axes ``(...)``.

  Touching boxes do not overlap (the overlap metric's convention).
  """
  sep = np.zeros(ca.shape[:-2], bool)
  for box in (ca, cb):
    for e in range(2):
      edge = box[..., e + 1, :] - box[..., e, :]
      axis = np.stack([-edge[..., 1], edge[..., 0]], -1)[..., None, :]
      pa, pb = (ca * axis).sum(-1), (cb * axis).sum(-1)
      sep |= (pa.max(-1) <= pb.min(-1)) | (pb.max(-1) <= pa.min(-1))
  return ~sep


class RoadEdges:
  """Road-edge samples of a roadgraph for host-side off-road checks.

  Follows the off-road metric's definition (``spacer_jax.sim.metrics.road_edges``) in
  2D: nearest edge sample, sign of the cross product with its direction (positive =
  off the road), the previous sample of the same polyline taken when it is more
  on-road.

  Args:
    lines: resampled polylines ``(P_k, 2)`` in roadgraph order.
    types: their roadgraph types; only road edges (15, 16) are kept.
  """

  def __init__(self, lines: list[np.ndarray], types: list[int]):
    keep = [np.asarray(ln, np.float64)[:, :2] for ln, ty in zip(lines, types)
            if ty in (15, 16)]
    self.num = sum(len(k) for k in keep)
    if not self.num:
      return
    self.xy = np.concatenate(keep)
    dirs, has_prev = [], []
    for k in keep:
      d = np.zeros_like(k)
      if len(k) > 1:
        diff = np.diff(k, axis=0)
        d[:-1] = diff / np.maximum(np.linalg.norm(diff, axis=1, keepdims=True), 1e-12)
      dirs.append(d)
      hp = np.ones(len(k), bool)
      hp[0] = False
      has_prev.append(hp)
    self.dir = np.concatenate(dirs)
    self.prev_dir = np.concatenate([self.dir[:1], self.dir[:-1]])
    self.has_prev = np.concatenate(has_prev)

  def signed_distance(self, pts: np.ndarray) -> np.ndarray:
    """Signed distance (m) of points ``(..., 2)`` to the road edge (positive: off road;
    -inf without edges)."""
    if not self.num:
      return np.full(pts.shape[:-1], -np.inf)
    q = pts.reshape(-1, 2)
    d2 = ((q[:, None, :] - self.xy[None, :, :]) ** 2).sum(-1)
    k = d2.argmin(1)
    v = q - self.xy[k]
    cross = v[:, 0] * self.dir[k, 1] - v[:, 1] * self.dir[k, 0]
    cross_p = v[:, 0] * self.prev_dir[k, 1] - v[:, 1] * self.prev_dir[k, 0]
    cross = np.where(self.has_prev[k] & (cross_p < cross), cross_p, cross)
    return (np.sign(cross) * np.sqrt(d2[np.arange(len(q)), k])).reshape(pts.shape[:-1])
