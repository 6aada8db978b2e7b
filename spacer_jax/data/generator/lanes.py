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

  _length: tuple = field(default=(None, 0.0), init=False, repr=False, compare=False)

  @property
  def length(self) -> float:
    """Arc length in m (cached until ``xy`` is replaced)."""
    if self._length[0] is not self.xy:
      self._length = (self.xy, float(geo.arc_length(self.xy)[-1]))
    return self._length[1]


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


def _bbox(xy: np.ndarray) -> tuple[float, float, float, float]:
  lo, hi = xy.min(0), xy.max(0)
  return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def _zones_between(a: np.ndarray, b: np.ndarray, thresh: float,
                   max_zones: int) -> tuple[list, list]:
  """Arc intervals where polylines ``a`` and ``b`` come within ``thresh`` m.

  Returns matching lists of [s0, s1] on a and on b (one entry per contiguous zone).
  """
  step_a = max(len(a) // 200, 1)
  step_b = max(len(b) // 200, 1)
  aa, bb = a[::step_a], b[::step_b]
  dx = aa[:, None, 0] - bb[None, :, 0]
  dy = aa[:, None, 1] - bb[None, :, 1]
  close = dx * dx + dy * dy < thresh * thresh
  rows = np.flatnonzero(close.any(1))
  if len(rows) == 0:
    return [], []
  sa, sb = geo.arc_length(aa), geo.arc_length(bb)
  # Split into contiguous runs along a; each run is one crossing.
  breaks = np.flatnonzero(np.diff(rows) > 2)
  runs = np.split(rows, breaks + 1)
  za, zb = [], []
  for run in runs[:max_zones]:
    cols = np.flatnonzero(close[run].any(0))
    za.append([sa[run[0]], sa[run[-1]]])
    zb.append([sb[cols[0]], sb[cols[-1]]])
  return za, zb


def _route_profiles(geoms: list[np.ndarray], lane_start: np.ndarray,
                    lane_limit: np.ndarray) -> tuple[np.ndarray, ...]:
  """Batched geometry of all routes at once.

  Args:
    geoms: resampled centrelines, one ``(P_k, 2)`` per route.
    lane_start: ``(R, max_lanes)`` arc position where each lane of the route starts
      (inf past the last lane), on the resampled arc.
    lane_limit: ``(R, max_lanes)`` speed limit of each lane (m/s).

  Returns:
    xy ``(R, Pmax, 2)`` padded with the last point, ds ``(R,)``, length ``(R,)``,
    yaw ``(R, Pmax)`` and vmax ``(R, Pmax)`` (both padded with their last value).
  """
  r = len(geoms)
  n = np.array([len(g) for g in geoms])
  pmax = int(n.max())
  xy = np.empty((r, pmax, 2))
  last_dir = np.empty((r, 2))
  for k, g in enumerate(geoms):
    xy[k, :len(g)] = g
    xy[k, len(g):] = g[-1]
    last_dir[k] = g[-1] - g[-2]
  # Differences near a route's end see the road continue straight rather than stop
  # (repeated points would read as a sharp turn).
  beyond = np.maximum(np.arange(pmax)[None, :] - (n - 1)[:, None], 0)
  ext = xy + beyond[..., None] * last_dir[:, None, :]
  seg = np.hypot(*np.diff(ext, axis=1).transpose(2, 0, 1))
  s = np.concatenate([np.zeros((r, 1)), np.cumsum(seg, axis=1)], axis=1)
  rows = np.arange(r)
  length = s[rows, n - 1]
  ds = length / (n - 1)
  d = np.gradient(ext, axis=1)
  yaw = np.arctan2(d[..., 1], d[..., 0])
  # Signed curvature from arc-length derivatives, then smoothed over ~3 m so
  # resampling kinks do not read as sharp turns.
  g_s = np.maximum(np.gradient(s, axis=1), 1e-9)
  dx, dy = d[..., 0] / g_s, d[..., 1] / g_s
  ddx, ddy = np.gradient(dx, axis=1) / g_s, np.gradient(dy, axis=1) / g_s
  kappa = np.abs(dx * ddy - dy * ddx) / np.maximum((dx**2 + dy**2) ** 1.5, 1e-9)
  c = np.cumsum(np.pad(kappa, ((0, 0), (4, 3))), axis=1)
  kappa = (c[:, 7:] - c[:, :-7]) / 7.0
  lane = np.maximum((lane_start[:, None, :] <= s[..., None]).sum(-1) - 1, 0)
  limit = np.take_along_axis(lane_limit, lane, axis=1)
  v_lim = np.minimum(limit, np.sqrt(LATERAL_ACCEL / np.maximum(kappa, 1e-6)))
  # Speed one can still brake down to v_lim(s') at CURVE_DECEL: v(s)^2 =
  # min_{s' >= s} v_lim(s')^2 + 2 b (s' - s); separable, so a reverse cumulative min.
  g2 = v_lim**2 + 2 * CURVE_DECEL * s
  v2 = np.minimum.accumulate(g2[:, ::-1], axis=1)[:, ::-1] - 2 * CURVE_DECEL * s
  vmax = np.sqrt(np.maximum(v2, 0.0))
  pad = np.arange(pmax)[None, :] >= n[:, None]
  yaw = np.where(pad, yaw[rows, n - 1][:, None], yaw)
  vmax = np.where(pad, vmax[rows, n - 1][:, None], vmax)
  return xy, ds, length, yaw, vmax


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
  lane_len = {lid: lanes[lid].length for rt in routes for lid in rt}
  lane_start = np.full((r, max_l), np.inf)
  lane_end = np.full((r, max_l), np.inf)
  lane_limit = np.zeros((r, max_l))
  geoms: list[np.ndarray] = []
  for k, rt in enumerate(routes):
    ln = np.array([lane_len[lid] for lid in rt])
    end = np.cumsum(ln)
    lane_start[k, :len(rt)] = end - ln
    lane_end[k, :len(rt)] = end
    lane_limit[k, :len(rt)] = [lanes[lid].speed_limit for lid in rt]
    lane_limit[k, len(rt):] = lanes[rt[-1]].speed_limit
    geoms.append(geo.concat(*[lanes[i].xy for i in rt]))
  geoms = geo.resample_many(geoms, spacing)
  # Rescale lane boundaries to the resampled arc so lookups agree with geometry.
  n_lanes = np.array([len(rt) for rt in routes])
  scale = geo.total_lengths(geoms) / lane_end[np.arange(r), n_lanes - 1]
  lane_start *= scale[:, None]
  lane_end *= scale[:, None]
  xy_a, ds, length, yaw_a, vmax_a = _route_profiles(geoms, lane_start, lane_limit)
  offsets = [{lid: lane_start[k, j] for j, lid in enumerate(rt)}
             for k, rt in enumerate(routes)]
  stops = [[(lane_end[k, j], lid, lanes[lid].control) for j, lid in enumerate(rt)
            if lanes[lid].control != 'none'] for k, rt in enumerate(routes)]

  delta = np.full((r, r), np.nan)
  common_end = np.full((r, r), np.nan)
  join = np.full((r, r), np.nan)
  priority = np.zeros((r, r), np.int8)
  by_lane: dict[int, list[int]] = {}
  for k, rt in enumerate(routes):
    for lid in rt:
      by_lane.setdefault(lid, []).append(k)
  sharing = sorted({(a, b) for ks in by_lane.values() for a in ks for b in ks})
  for a, b in sharing:
    in_b = offsets[b]
    common = [lid for lid in routes[a] if lid in in_b]
    first, last = common[0], common[-1]
    delta[a, b] = offsets[a][first] - in_b[first]
    join[a, b] = offsets[a][first]
    common_end[a, b] = offsets[a][last] + lane_len[last]
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
  boxes = {lid: _bbox(lanes[lid].xy) for lid in {i for pair in zone_pairs for i in pair}}
  for la, lb in zone_pairs:
    a0, a1 = boxes[la], boxes[lb]
    if (a0[2] + zone_thresh < a1[0] or a1[2] + zone_thresh < a0[0]
        or a0[3] + zone_thresh < a1[1] or a1[3] + zone_thresh < a0[1]):
      continue  # bounding boxes too far apart to come within zone_thresh
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
