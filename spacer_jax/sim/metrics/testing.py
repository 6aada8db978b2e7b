"""Synthetic maps and object placements for metric tests and benchmarks (host-side).

:func:`random_map` draws a WOMD-like roadgraph: curved roads bounded by road edges
(boundary and median types, drivable area on the left of each edge), city blocks whose
edges have sharp convex and concave corners, polylines that meet at joints, a bridge
crossing other roads at a different height (an over/underpass), and lane centres that
fill the rest of the point budget. :func:`objects_near_edges` places boxes that mostly
straddle or hug road edges, where the off-road sign is hardest.
"""

from __future__ import annotations

import numpy as np

from spacer_jax.sim.builders import Polyline, resample_polyline, roadgraph_from_polylines
from spacer_jax.sim.datatypes import MapElementIds, RoadgraphPoints

_EDGE = int(MapElementIds.ROAD_EDGE_BOUNDARY)
_MEDIAN = int(MapElementIds.ROAD_EDGE_MEDIAN)
_LANE = int(MapElementIds.LANE_SURFACE_STREET)


def _curve(rng: np.random.Generator, start: np.ndarray, heading: float, length: float,
           max_curvature: float = 0.02) -> np.ndarray:
  """A smooth planar curve ``(n, 2)`` with piecewise-constant curvature, 1 m steps."""
  n = max(int(length), 2)
  k = np.repeat(rng.uniform(-max_curvature, max_curvature, n // 40 + 1), 40)[:n]
  yaw = heading + np.cumsum(k)
  return start + np.cumsum(np.stack([np.cos(yaw), np.sin(yaw)], -1), axis=0)


def _offset(center: np.ndarray, d: float) -> np.ndarray:
  """Offsets a polyline ``(n, 2)`` by ``d`` metres to its left."""
  t = np.gradient(center, axis=0)
  t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
  return center + d * np.stack([-t[:, 1], t[:, 0]], -1)


def _with_z(xy: np.ndarray, z: float | np.ndarray) -> np.ndarray:
  return np.concatenate([xy, np.broadcast_to(np.asarray(z, float), (len(xy),))[:, None]],
                        axis=1)


def random_map(rng: np.random.Generator, num_points: int = 20000, num_roads: int = 5,
               num_blocks: int = 4, extent: float = 150.0, spacing: float = 0.5
               ) -> RoadgraphPoints:
  """A random WOMD-like roadgraph ``(num_points,)`` (see the module docstring)."""
  lines: list[Polyline] = []
  next_id = [0]

  def add(xyz, kind):
    lines.append(Polyline(xyz=np.asarray(xyz, float), type=kind, id=next_id[0]))
    next_id[0] += 1

  centers = []
  for r in range(num_roads):
    start = rng.uniform(-extent, extent, 2)
    center = _curve(rng, start, rng.uniform(-np.pi, np.pi), rng.uniform(120, 280))
    half = rng.uniform(3.5, 8.0)
    z = 7.0 if r == 0 else 0.0  # Road 0 is a bridge over the others.
    right = _offset(center, -half)
    left = _offset(center, half)[::-1]  # Reversed: the road stays on its left.
    # Split the right edge into two polylines meeting at a joint.
    cut = len(right) // 2
    add(_with_z(right[:cut + 1], z), _EDGE)
    add(_with_z(right[cut:], z), _EDGE)
    add(_with_z(left, z), _EDGE)
    if half > 6.0:  # A median strip in the middle of wide roads.
      add(_with_z(_offset(center, -0.3), z), _MEDIAN)
    centers.append((center, half, z))
  for _ in range(num_blocks):
    # A city block: off-road island, traversed clockwise so the outside (road) is left.
    c = rng.uniform(-extent, extent, 2)
    w, h = rng.uniform(10, 40, 2)
    poly = c + np.array([[-w, -h], [-w, h], [w * 0.3, h], [w, h * 0.2], [w, -h],
                         [-w, -h]]) / 2
    # A notch makes one concave corner; the rest are convex.
    poly = np.insert(poly, 4, c + np.array([w * 0.1, -h * 0.1]) / 2, axis=0)
    add(_with_z(poly, 0.0), _EDGE)
  # Lane centres fill the point budget (as in WOMD, most points are not edges).
  edge_points = sum(len(resample_polyline(p.xyz, spacing)) for p in lines)
  budget = num_points - edge_points - 10
  while budget > 0:
    center, half, z = centers[rng.integers(len(centers))]
    lane = _with_z(_offset(center, rng.uniform(-half, half)), z)
    lane = lane[: max(2, min(len(lane), int(budget * spacing)))]
    n = len(resample_polyline(lane, spacing))
    if n > budget:
      break
    add(lane, _LANE)
    budget -= n
  return roadgraph_from_polylines(lines, num_points, spacing)


def objects_near_edges(rng: np.random.Generator, roadgraph: RoadgraphPoints,
                       num_objects: int, spread: float = 3.0) -> dict[str, np.ndarray]:
  """Boxes ``(num_objects,)`` centred within ``spread`` m of random road-edge points.

  Returns numpy arrays x, y, z, yaw, length, width (z = the chosen edge point's z plus
  a little noise, so objects on a bridge sit on the bridge).
  """
  types = np.asarray(roadgraph.types)
  valid = np.asarray(roadgraph.valid)
  edge = np.flatnonzero(valid & ((types == _EDGE) | (types == _MEDIAN)))
  pick = edge[rng.integers(len(edge), size=num_objects)]
  x = np.asarray(roadgraph.x)[pick] + rng.uniform(-spread, spread, num_objects)
  y = np.asarray(roadgraph.y)[pick] + rng.uniform(-spread, spread, num_objects)
  z = np.asarray(roadgraph.z)[pick] + rng.uniform(-0.5, 1.0, num_objects)
  return dict(x=x, y=y, z=z, yaw=rng.uniform(-np.pi, np.pi, num_objects),
              length=rng.uniform(3.5, 5.5, num_objects),
              width=rng.uniform(1.7, 2.2, num_objects))
