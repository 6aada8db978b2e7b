"""Host-side polyline geometry for map construction (numpy, float64).

Polylines are ``(P, 2)`` arrays of points in metres. Curves are built analytically
(lines, arcs, cubic Hermite connectors) and resampled uniformly so that arc length
maps to a point index by a single division, which keeps route lookups vectorised.
"""

from __future__ import annotations

import numpy as np


def arc_length(xy: np.ndarray) -> np.ndarray:
  """Cumulative arc length ``(P,)`` of a polyline ``(P, 2)``, starting at 0."""
  seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
  return np.concatenate([[0.0], np.cumsum(seg)])


def resample(xy: np.ndarray, spacing: float = 0.5) -> np.ndarray:
  """Uniformly resamples ``(P, 2)`` to spacing <= ``spacing`` m, keeping both ends."""
  s = arc_length(xy)
  n = max(int(np.ceil(s[-1] / spacing)), 1) + 1
  t = np.linspace(0.0, s[-1], n)
  return np.stack([np.interp(t, s, xy[:, 0]), np.interp(t, s, xy[:, 1])], axis=1)


def tangents(xy: np.ndarray) -> np.ndarray:
  """Unit tangents ``(P, 2)`` (central differences; one-sided at the ends)."""
  d = np.gradient(xy, axis=0)
  return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)


def normals(xy: np.ndarray) -> np.ndarray:
  """Unit left normals ``(P, 2)`` (tangent rotated +90 degrees)."""
  t = tangents(xy)
  return np.stack([-t[:, 1], t[:, 0]], axis=1)


def offset(xy: np.ndarray, dist: float) -> np.ndarray:
  """Parallel curve ``dist`` m to the left (negative: right) of ``xy``."""
  return xy + dist * normals(xy)


def curvature(xy: np.ndarray) -> np.ndarray:
  """Signed curvature ``(P,)`` in 1/m (positive turning left)."""
  s = arc_length(xy)
  ds = np.maximum(np.gradient(s), 1e-9)
  dx, dy = np.gradient(xy[:, 0]) / ds, np.gradient(xy[:, 1]) / ds
  ddx, ddy = np.gradient(dx) / ds, np.gradient(dy) / ds
  return (dx * ddy - dy * ddx) / np.maximum((dx**2 + dy**2) ** 1.5, 1e-9)


def line(p0, p1, spacing: float = 0.5) -> np.ndarray:
  """Straight segment from ``p0`` to ``p1``."""
  return resample(np.array([p0, p1], np.float64), spacing)


def arc(center, radius: float, a0: float, a1: float, spacing: float = 0.5) -> np.ndarray:
  """Circular arc around ``center`` from angle ``a0`` to ``a1`` (rad, CCW if a1 > a0)."""
  n = max(int(np.ceil(abs(a1 - a0) * radius / spacing)), 1) + 1
  a = np.linspace(a0, a1, n)
  return np.stack([center[0] + radius * np.cos(a), center[1] + radius * np.sin(a)], 1)


def hermite(p0, h0: float, p1, h1: float, spacing: float = 0.5,
            tension: float = 1.0) -> np.ndarray:
  """Cubic Hermite curve from ``p0`` heading ``h0`` to ``p1`` heading ``h1``.

  Tangent-continuous with the lanes it connects, so that a vehicle's heading never
  jumps when it moves from a lane into a junction connector.
  """
  p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
  chord = np.linalg.norm(p1 - p0) * tension
  m0 = chord * np.array([np.cos(h0), np.sin(h0)])
  m1 = chord * np.array([np.cos(h1), np.sin(h1)])
  u = np.linspace(0.0, 1.0, 200)[:, None]
  h00, h10 = 2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u
  h01, h11 = -2 * u**3 + 3 * u**2, u**3 - u**2
  return resample(h00 * p0 + h10 * m0 + h01 * p1 + h11 * m1, spacing)


def concat(*parts: np.ndarray) -> np.ndarray:
  """Joins polylines end to start, dropping duplicated joint points."""
  out = [parts[0]]
  for p in parts[1:]:
    if np.linalg.norm(p[0] - out[-1][-1]) < 1e-6:
      p = p[1:]
    out.append(p)
  return np.concatenate(out, axis=0)


def rotation(theta: float) -> np.ndarray:
  """2x2 rotation matrix by ``theta`` rad (CCW)."""
  c, s = np.cos(theta), np.sin(theta)
  return np.array([[c, -s], [s, c]])


def transform(xy: np.ndarray, theta: float, origin) -> np.ndarray:
  """Rotates ``(P, 2)`` by ``theta`` about the origin, then translates by ``origin``."""
  c, s = np.cos(theta), np.sin(theta)
  # Written out rather than a matrix product: no BLAS call for a 2x2 rotation.
  return np.stack([c * xy[..., 0] - s * xy[..., 1], s * xy[..., 0] + c * xy[..., 1]],
                  -1) + np.asarray(origin, np.float64)


def project(xy: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Nearest polyline vertex to each point: returns (arc position ``(M,)``, lateral
  signed offset ``(M,)``, positive to the left)."""
  s = arc_length(xy)
  d2 = ((points[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
  idx = np.argmin(d2, axis=1)
  lat = ((points - xy[idx]) * normals(xy)[idx]).sum(-1)
  return s[idx], lat


def resample_many(lines: list[np.ndarray], spacing: float = 0.5) -> list[np.ndarray]:
  """Resamples many polylines ``(P_k, D)`` at once, like :func:`resample` each.

  Every line gets ``max(ceil(L_k / spacing), 1) + 1`` uniformly spaced points keeping
  both ends (``L_k`` its arc length); a single point or a zero-length line becomes its
  first point. One interpolation over all lines laid end to end on a common arc axis
  (1 m apart so neighbours never mix) replaces a Python loop of small calls.
  """
  if not lines:
    return []
  sizes = np.array([len(p) for p in lines])
  pts = np.concatenate([np.asarray(p, np.float64) for p in lines])
  first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  seg = np.linalg.norm(np.diff(pts[:, :2], axis=0), axis=1)
  boundary = first[1:] - 1   # segment from one line's last point to the next line
  inner = seg.copy()
  inner[boundary] = 0.0
  within = np.concatenate([[0.0], np.cumsum(inner)])
  length = within[first + sizes - 1] - within[first]
  seg[boundary] = 1.0
  axis = np.concatenate([[0.0], np.cumsum(seg)])
  n = np.where(length > 0, np.maximum(np.ceil(length / spacing), 1) + 1, 1).astype(np.int64)
  line = np.repeat(np.arange(len(lines)), n)
  j = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
  frac = j / np.maximum(n - 1, 1)[line]
  t = axis[first][line] + frac * length[line]
  out = np.stack([np.interp(t, axis, pts[:, c]) for c in range(pts.shape[1])], axis=1)
  return np.split(out, np.cumsum(n)[:-1])


def total_lengths(lines: list[np.ndarray]) -> np.ndarray:
  """Arc length ``(K,)`` of each polyline ``(P_k, 2)``, in one pass over all of them."""
  sizes = np.array([len(p) for p in lines])
  first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  seg = np.linalg.norm(np.diff(np.concatenate(lines)[:, :2], axis=0), axis=1)
  seg[first[1:] - 1] = 0.0   # the jumps from one line to the next
  return np.add.reduceat(np.concatenate([seg, [0.0]]), first)
