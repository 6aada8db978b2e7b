"""Lane graph and routes: the drivable topology the traffic model moves along.

A :class:`Lane` is a uniformly resampled centreline with successors and parallel
neighbours. A route is a sequence of lane ids from an entry to an exit; its geometry is
the concatenated centreline, resampled uniformly so that ``index = s / ds``.
:class:`RouteTable` precomputes what the traffic model needs for every pair of routes
(shared lanes and crossing zones), so each simulation step is a handful of vectorised
``(E, E)`` numpy operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spacer_jax.data.generator import geometry as geo

# Lateral acceleration a human accepts in turns (m/s^2); sets curve speeds.
LATERAL_ACCEL = 2.2
# Comfortable deceleration used to start slowing before a curve (m/s^2).
CURVE_DECEL = 1.5


@dataclass
class Lane:
  """One lane (or a pedestrian walkway, ``agent='ped'``).

  Attributes:
    id: polyline id in the roadgraph.
    xy: centreline ``(P, 2)`` in m, uniformly spaced, in the direction of travel.
    kind: roadgraph type (1 freeway, 2 surface street).
    speed_limit: in m/s.
    successors: lane ids reachable from the lane's end.
    left, right: id of the parallel same-direction neighbour (index-aligned xy), or None.
    junction: a connector inside a junction (no spawning, no lane changes).
    control: what stops traffic at the lane's END: 'none', 'light' or 'stop'.
    priority: 0 = has right of way; 1 = yields where it joins or crosses others.
    agent: 'veh' for vehicle lanes, 'ped' for walkways (not written to the roadgraph).
    in_roadgraph: whether the centreline is written as a lane polyline.
  """

  id: int
  xy: np.ndarray
  kind: int = 2
  speed_limit: float = 13.0
  successors: list[int] = field(default_factory=list)
  left: int | None = None
  right: int | None = None
  junction: bool = False
  control: str = 'none'
  priority: int = 0
  agent: str = 'veh'
  in_roadgraph: bool = True

  @property
  def length(self) -> float:
    return float(geo.arc_length(self.xy)[-1])


def enumerate_routes(lanes: dict[int, Lane], starts: list[int],
                     max_lanes: int = 8) -> list[list[int]]:
  """All lane sequences from each start lane to a lane without successors."""
  routes: list[list[int]] = []
  stack = [[s] for s in starts]
  while stack:
    path = stack.pop()
    succ = lanes[path[-1]].successors
    if not succ:
      routes.append(path)
      continue
    if len(path) >= max_lanes:
      continue  # never ends inside the map (e.g. circling a roundabout): drop it
    for nxt in succ:
      if nxt not in path:
        stack.append(path + [nxt])
  return sorted(routes)


@dataclass
class RouteTable:
  """Geometry of every route and the relations between every pair of routes.

  Attributes (R routes, K crossing zones per pair, Pmax samples per route):
    lanes: lane ids of each route.
    xy: ``(R, Pmax, 2)`` resampled centrelines (padded with the last point).
    ds: ``(R,)`` sample spacing in m; ``length``: ``(R,)`` arc length in m.
    yaw: ``(R, Pmax)`` tangent heading in rad.
    vmax: ``(R, Pmax)`` advisory speed in m/s (speed limit, curves, braking ahead).
    lane_start, lane_end: ``(R, max_lanes)`` arc position of each lane of the route.
    stops: per route a list of (arc position, lane id, control) of its stop lines.
    delta: ``(R, R)`` ``s_in_a = s_in_b + delta[a, b]`` on their shared lanes (nan if
      none); common_end: ``(R, R)`` end of the shared part in route a's arc length;
      join: ``(R, R)`` start of the shared part in route a's arc length.
    zone: ``(R, R, K, 2)`` crossing intervals [s0, s1] in route a's arc length
      (nan if none); zone index k of (a, b) pairs with index k of (b, a).
    zone_yield: ``(R, R, K)`` +1 where a yields to b in that zone, -1 where b yields
      to a, 0 for first come, first served.
    priority: ``(R, R)`` 1 where route a yields to route b where they join.
  """

  lanes: list[list[int]]
  xy: np.ndarray
  ds: np.ndarray
  length: np.ndarray
  yaw: np.ndarray
  vmax: np.ndarray
  lane_start: np.ndarray
  lane_end: np.ndarray
  stops: list[list[tuple[float, int, str]]]
  delta: np.ndarray
  common_end: np.ndarray
  join: np.ndarray
  zone: np.ndarray
  zone_yield: np.ndarray
  priority: np.ndarray
  lane_ids: np.ndarray

  @property
  def num_routes(self) -> int:
    return len(self.lanes)

  def lookup(self, route: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position ``(..., 2)`` and heading ``(...)`` at arc ``s`` on ``route`` (same shapes)."""
    f = np.clip(s / self.ds[route], 0.0, self.xy.shape[1] - 1.001)
    i = np.floor(f).astype(np.int64)
    w = (f - i)[..., None]
    xy = self.xy[route, i] * (1 - w) + self.xy[route, i + 1] * w
    yaw = self.yaw[route, i]
    return xy, yaw

  def lane_at(self, route: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Index (within the route) of the lane holding arc position ``s``."""
    starts = self.lane_start[route]
    return np.maximum((starts <= s[..., None]).sum(-1) - 1, 0)


def _lookup_static(xy: np.ndarray, ds: np.ndarray, route: np.ndarray, s: np.ndarray):
  f = np.clip(s / ds[route], 0.0, xy.shape[1] - 1.001)
  i = np.floor(f).astype(np.int64)
  w = (f - i)[..., None]
  return xy[route, i] * (1 - w) + xy[route, i + 1] * w, i


def _zones_between(a: np.ndarray, b: np.ndarray, thresh: float,
                   max_zones: int) -> tuple[list, list]:
  """Arc intervals where polylines ``a`` and ``b`` come within ``thresh`` m.

  Returns matching lists of [s0, s1] on a and on b (one entry per contiguous zone).
  """
  if (a.max(0) + thresh < b.min(0)).any() or (b.max(0) + thresh < a.min(0)).any():
    return [], []
  step_a = max(len(a) // 200, 1)
  step_b = max(len(b) // 200, 1)
  aa, bb = a[::step_a], b[::step_b]
  d = np.sqrt(((aa[:, None, :] - bb[None, :, :]) ** 2).sum(-1))
  close = d < thresh
  if not close.any():
    return [], []
  sa, sb = geo.arc_length(aa), geo.arc_length(bb)
  rows = np.nonzero(close.any(1))[0]
  # Split into contiguous runs along a; each run is one crossing.
  breaks = np.nonzero(np.diff(rows) > 2)[0]
  runs = np.split(rows, breaks + 1)
  za, zb = [], []
  for run in runs[:max_zones]:
    cols = np.nonzero(close[run].any(0))[0]
    za.append([sa[run[0]], sa[run[-1]]])
    zb.append([sb[cols[0]], sb[cols[-1]]])
  return za, zb


def build_route_table(lanes: dict[int, Lane], routes: list[list[int]], spacing: float,
                      zone_pairs: set[tuple[int, int]], zone_thresh: float = 3.2,
                      max_zones: int = 2) -> RouteTable:
  """Precomputes route geometry and pairwise relations.

  Args:
    lanes: the lane graph.
    routes: lane id sequences.
    spacing: resampling step in m.
    zone_pairs: unordered lane-id pairs that may physically cross (junction
      connectors, walkways over roads); only these are searched for crossing zones.
    zone_thresh: centreline distance (m) under which two paths are in conflict.
    max_zones: crossing zones kept per route pair.
  """
  r = len(routes)
  max_l = max(len(x) for x in routes)
  geoms, lane_start, lane_end = [], np.full((r, max_l), np.inf), np.full((r, max_l), np.inf)
  offsets: list[dict[int, float]] = []
  stops = []
  for k, rt in enumerate(routes):
    xy = geo.concat(*[lanes[i].xy for i in rt])
    geoms.append(geo.resample(xy, spacing))
    off, acc, st = {}, 0.0, []
    for j, lid in enumerate(rt):
      off[lid] = acc
      lane_start[k, j] = acc
      acc += lanes[lid].length
      lane_end[k, j] = acc
      if lanes[lid].control != 'none':
        st.append((acc, lid, lanes[lid].control))
    offsets.append(off)
    stops.append(st)
  pmax = max(len(g) for g in geoms)
  xy_a = np.zeros((r, pmax, 2))
  yaw_a = np.zeros((r, pmax))
  vmax_a = np.zeros((r, pmax))
  ds = np.zeros(r)
  length = np.zeros(r)
  for k, g in enumerate(geoms):
    s = geo.arc_length(g)
    length[k] = s[-1]
    ds[k] = s[-1] / (len(g) - 1)
    # Rescale lane boundaries to the resampled arc so lookups agree with geometry.
    scale = s[-1] / lane_end[k, len(routes[k]) - 1]
    lane_start[k, :len(routes[k])] *= scale
    lane_end[k, :len(routes[k])] *= scale
    stops[k] = [(a * scale, lid, c) for a, lid, c in stops[k]]
    offsets[k] = {lid: o * scale for lid, o in offsets[k].items()}
    xy_a[k, :len(g)] = g
    xy_a[k, len(g):] = g[-1]
    t = geo.tangents(g)
    yaw_a[k, :len(g)] = np.arctan2(t[:, 1], t[:, 0])
    yaw_a[k, len(g):] = yaw_a[k, len(g) - 1]
    limit = np.concatenate([np.full(int(round((lane_end[k, j] - lane_start[k, j]) / ds[k])) + 1,
                                    lanes[lid].speed_limit)
                            for j, lid in enumerate(routes[k])])
    limit = np.resize(limit, len(g))
    kappa = np.abs(geo.curvature(g))
    # Smooth curvature over ~3 m so resampling kinks do not read as sharp turns.
    kappa = np.convolve(kappa, np.ones(7) / 7, mode='same')
    v_curve = np.sqrt(LATERAL_ACCEL / np.maximum(kappa, 1e-6))
    v_lim = np.minimum(limit, v_curve)
    # Speed one can still brake down to v_lim(s') at CURVE_DECEL: v(s)^2 =
    # min_{s' >= s} v_lim(s')^2 + 2 b (s' - s); separable, so a reverse cumulative min.
    g2 = v_lim**2 + 2 * CURVE_DECEL * s
    v2 = np.minimum.accumulate(g2[::-1])[::-1] - 2 * CURVE_DECEL * s
    vmax_a[k, :len(g)] = np.sqrt(np.maximum(v2, 0.0))
    vmax_a[k, len(g):] = vmax_a[k, len(g) - 1]

  delta = np.full((r, r), np.nan)
  common_end = np.full((r, r), np.nan)
  join = np.full((r, r), np.nan)
  priority = np.zeros((r, r), np.int8)
  sets = [set(x) for x in routes]
  for a in range(r):
    for b in range(r):
      common = sets[a] & sets[b]
      if not common:
        continue
      first = next(lid for lid in routes[a] if lid in common)
      last = [lid for lid in routes[a] if lid in common][-1]
      delta[a, b] = offsets[a][first] - offsets[b][first]
      join[a, b] = offsets[a][first]
      common_end[a, b] = offsets[a][last] + lanes[last].length
      # Yield at the join when a's lane before the join has low priority and b's not.
      ia = routes[a].index(first)
      ib = routes[b].index(first)
      pa = lanes[routes[a][ia - 1]].priority if ia > 0 else 0
      pb = lanes[routes[b][ib - 1]].priority if ib > 0 else 0
      priority[a, b] = 1 if pa > pb else 0

  # Past the end of their shared lanes two routes may stay side by side for a while
  # (connectors leaving the same lane overlap at first): keep them related until their
  # centrelines are more than a car width apart.
  pa, pb = np.nonzero(~np.isnan(delta))
  if len(pa):
    ahead = np.arange(0.0, 30.0, 1.0)
    sa = common_end[pa, pb][:, None] + ahead[None, :]
    sb = sa - delta[pa, pb][:, None]
    xa, _ = _lookup_static(xy_a, ds, pa[:, None], sa)
    xb, _ = _lookup_static(xy_a, ds, pb[:, None], sb)
    apart = (np.linalg.norm(xa - xb, axis=-1) > 3.0) | (sa > length[pa, None]) | (
        sb > length[pb, None])
    first = np.where(apart.any(1), apart.argmax(1), len(ahead) - 1)
    common_end[pa, pb] += ahead[first]
  zone = np.full((r, r, max_zones, 2), np.nan)
  # zone_yield[a, b, k]: +1 when a must yield to b there, -1 when b yields to a,
  # 0 when neither has right of way (first come, first served).
  zone_yield = np.zeros((r, r, max_zones), np.int8)
  lane_zones: dict[tuple[int, int], tuple[list, list]] = {}
  for la, lb in zone_pairs:
    za, zb = _zones_between(lanes[la].xy, lanes[lb].xy, zone_thresh, max_zones)
    if za:
      lane_zones[(la, lb)] = (za, zb)
      lane_zones[(lb, la)] = (zb, za)
  if lane_zones:
    for a in range(r):
      for b in range(a + 1, r):
        if not np.isnan(delta[a, b]):
          continue
        k = 0
        for la in routes[a]:
          for lb in routes[b]:
            hit = lane_zones.get((la, lb))
            if hit is None:
              continue
            for (a0, a1), (b0, b1) in zip(*hit):
              if k >= max_zones:
                break
              zone[a, b, k] = [offsets[a][la] + a0, offsets[a][la] + a1]
              zone[b, a, k] = [offsets[b][lb] + b0, offsets[b][lb] + b1]
              y = int(np.sign(lanes[la].priority - lanes[lb].priority))
              zone_yield[a, b, k], zone_yield[b, a, k] = y, -y
              k += 1
  lane_ids = np.full((r, max_l), -1, np.int64)
  for k, rt in enumerate(routes):
    lane_ids[k, :len(rt)] = rt
  return RouteTable(lanes=routes, xy=xy_a, ds=ds, length=length, yaw=yaw_a, vmax=vmax_a,
                    lane_start=lane_start, lane_end=lane_end, stops=stops, delta=delta,
                    common_end=common_end, join=join, zone=zone, zone_yield=zone_yield,
                    priority=priority, lane_ids=lane_ids)
