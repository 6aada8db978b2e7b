"""Map families: procedural road layouts as lanes plus roadgraph features.

Every family returns a :class:`RoadMap`: the lane graph the traffic model drives on
(:class:`~spacer_jax.data.generator.lanes.Lane`), the painted/edge/crosswalk/stop-sign
polylines of the roadgraph, pedestrian walkways, and the signal groups of its traffic
lights. Conventions (see the Waymax spec): right-hand traffic; lane centrelines point
in the direction of travel; road edges are oriented so the drivable road is on their
LEFT; stop lines are at the end of the controlled lane.

Roads run far enough from the map's centre (:class:`MapExtent`) that nothing the log
shows leaves them: every agent stays on its route for the whole log, and the assembler
crops the roadgraph to what the logged objects reach. Surface streets may have parking
strips between the curb lane and the road edge (:class:`ParkingStrip`), where the
parking module puts parked cars.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spacer_jax.data.generator import geometry as geo
from spacer_jax.data.generator.lanes import Lane
from spacer_jax.sim.builders import Polyline
from spacer_jax.sim.datatypes import MapElementIds as T

# Types of painted lines.
BROKEN_WHITE = int(T.ROAD_LINE_BROKEN_SINGLE_WHITE)
SOLID_WHITE = int(T.ROAD_LINE_SOLID_SINGLE_WHITE)
DOUBLE_YELLOW = int(T.ROAD_LINE_SOLID_DOUBLE_YELLOW)
EDGE = int(T.ROAD_EDGE_BOUNDARY)
MEDIAN = int(T.ROAD_EDGE_MEDIAN)
# Pedestrians walk this far outside the road edge (m).
SIDEWALK_OFFSET = 2.5
# Width of the blunt gore nose where an on-ramp's left edge meets the main road's (m).
GORE_NOSE_M = 1.0
# Largest desired speed of any agent as a multiple of the speed limit (the upper bound
# of the drivers' v0 factor in traffic.sample_agents).
MAX_SPEED_FACTOR = 1.15
# The SDC is chosen among vehicles this close to the map centre at the current step (m).
SDC_RADIUS_M = 40.0
# Extra road beyond the farthest point the log can reach (m).
EXTENT_MARGIN_M = 20.0
# Parking strips: width (m) and the stretch next to a junction or a roundabout's flare
# kept free of parked cars (m), as "no parking" zones near crossings are.
PARKING_WIDTH_M = (2.3, 2.7)
NO_PARKING_NEAR_JUNCTION_M = 22.0


@dataclass(frozen=True)
class MapExtent:
  """How far roads must run from the map centre so that the log stays on them.

  Attributes:
    horizon_s: duration of the log in s (WOMD: 9.1).
    radius_m: objects are logged from the first step they are within this distance of
      the SDC (the assembler's tracking radius).
  """

  horizon_s: float = 9.1
  radius_m: float = 80.0

  def road_length(self, speed: float) -> float:
    """Distance (m) a road with speed limit ``speed`` (m/s) runs from the map centre.

    The SDC starts within ``SDC_RADIUS_M`` of the centre, nobody drives faster than
    ``MAX_SPEED_FACTOR`` x the limit, and a logged object is within ``radius_m`` of the
    SDC when first logged: so no logged position lies farther from the centre than
    ``SDC_RADIUS_M + radius_m + MAX_SPEED_FACTOR * speed * horizon_s``.
    """
    return (SDC_RADIUS_M + self.radius_m + MAX_SPEED_FACTOR * speed * self.horizon_s
            + EXTENT_MARGIN_M)


@dataclass
class ParkingStrip:
  """Where cars may park: a strip between a curb lane and the road edge.

  Attributes:
    xy: the strip's centreline ``(P, 2)`` in m, in the adjacent lane's direction of
      travel, already trimmed to where parking is allowed.
    width: strip width in m (lane boundary to road edge).
  """

  xy: np.ndarray
  width: float


@dataclass
class RoadMap:
  """A generated map.

  Attributes:
    family: name of the map family.
    lanes: lane id -> lane (vehicle lanes and pedestrian walkways).
    features: non-lane roadgraph polylines (lines, edges, crosswalks, stop signs).
    entries: lane ids where vehicles enter the map (routes start here).
    ped_entries: walkway ids where pedestrians' routes start.
    signal_groups: lists of signal-controlled lane ids that share a phase; the
      signals module runs them through a cycle with conflicting groups never green
      together.
    zone_pairs: unordered lane-id pairs that may cross (for conflict detection).
    center: a point of interest (junction centre) in m; the SDC starts near it.
    parking: strips where parked cars may stand.
  """

  family: str
  lanes: dict[int, Lane] = field(default_factory=dict)
  features: list[Polyline] = field(default_factory=list)
  entries: list[int] = field(default_factory=list)
  ped_entries: list[int] = field(default_factory=list)
  signal_groups: list[list[int]] = field(default_factory=list)
  zone_pairs: set[tuple[int, int]] = field(default_factory=set)
  center: np.ndarray = field(default_factory=lambda: np.zeros(2))
  parking: list[ParkingStrip] = field(default_factory=list)
  _next_id: int = 0

  def new_id(self) -> int:
    self._next_id += 1
    return self._next_id

  def add_lane(self, xy: np.ndarray, **kw) -> Lane:
    lane = Lane(id=self.new_id(), xy=xy, **kw)
    self.lanes[lane.id] = lane
    return lane

  def add_feature(self, xy: np.ndarray, type_: int) -> int:
    pid = self.new_id()
    self.features.append(Polyline(np.asarray(xy, np.float64), int(type_), pid))
    return pid

  def lane_polylines(self) -> list[Polyline]:
    """Lane centrelines that belong in the roadgraph."""
    return [Polyline(ln.xy, ln.kind, ln.id) for ln in self.lanes.values()
            if ln.in_roadgraph and ln.agent == 'veh']


@dataclass
class Corridor:
  """A two-way road along a reference line (the centre of the carriageway).

  ``fwd`` lanes run along the reference on its right, ``bwd`` lanes against it on its
  left (right-hand traffic); lane lists are ordered from the centre outwards.
  """

  ref: np.ndarray
  fwd: list[Lane]
  bwd: list[Lane]
  half_fwd: float
  half_bwd: float


def build_corridor(m: RoadMap, ref: np.ndarray, n_fwd: int, n_bwd: int, width: float,
                   speed: float, kind: int = 2, median: float = 0.0,
                   edges: tuple[bool, bool] = (True, True), walk: bool = True,
                   lines: bool = True, parking: tuple[float, float] = (0.0, 0.0),
                   park_range: tuple[float, float] = (0.0, np.inf)) -> Corridor:
  """Adds lanes, lane lines, edges and walkways of a two-way road along ``ref``.

  Args:
    m: map to add to.
    ref: reference line ``(P, 2)``, uniformly sampled at ~0.5 m.
    n_fwd, n_bwd: lanes along / against ``ref`` (``n_bwd`` may be 0: one-way).
    width: lane width in m.
    speed: speed limit in m/s.
    kind: lane type (1 freeway, 2 surface street).
    median: half width of a raised median in m (0: painted double yellow).
    edges: whether to draw the (right, left) outer road edges.
    walk: whether to add sidewalk walkways outside the edges.
    lines: whether to paint the lane lines.
    parking: width in m of a parking strip outside the outermost (forward, backward)
      lane, between it and the road edge (0: none). The edge and the sidewalks move out
      by it.
    park_range: arc interval of ``ref`` (m from its start) where cars may park; the
      strip's road surface runs all along, only the parked cars keep to this range.
  """
  # Every line of the road is a parallel curve of ref: offsets along ref's normals
  # (computed once; a parallel curve has the same normals).
  nrm = geo.normals(ref)

  def offset(dist: float) -> np.ndarray:
    return ref + dist * nrm

  fwd, bwd = [], []
  for i in range(n_fwd):
    xy = offset(-(median + (i + 0.5) * width))
    fwd.append(m.add_lane(xy, kind=kind, speed_limit=speed))
  for i in range(n_bwd):
    xy = offset(median + (i + 0.5) * width)[::-1].copy()
    bwd.append(m.add_lane(xy, kind=kind, speed_limit=speed))
  # Parallel neighbours (index-aligned because they are offsets of one reference).
  for group in (fwd, bwd):
    for i in range(len(group) - 1):
      group[i].right, group[i + 1].left = group[i + 1].id, group[i].id
  if not n_bwd:
    parking = (parking[0], 0.0)  # the left side of a one-way road is the median
  half_f = median + n_fwd * width + parking[0]
  half_b = median + n_bwd * width + parking[1]
  if any(parking):
    s_ref = geo.arc_length(ref)
    inside = (s_ref >= park_range[0]) & (s_ref <= park_range[1])
    for side, (n_lanes, w_park) in enumerate(((n_fwd, parking[0]), (n_bwd, parking[1]))):
      if w_park <= 0 or inside.sum() < 2:
        continue
      sign = -1.0 if side == 0 else 1.0
      xy = offset(sign * (median + n_lanes * width + w_park / 2))[inside]
      # In the direction of the adjacent lane's traffic, as cars park.
      m.parking.append(ParkingStrip(xy if side == 0 else xy[::-1].copy(), float(w_park)))
  if lines:
    for i in range(1, n_fwd):
      m.add_feature(offset(-(median + i * width)), BROKEN_WHITE)
    for i in range(1, n_bwd):
      m.add_feature(offset(median + i * width)[::-1], BROKEN_WHITE)
  if n_bwd and median <= 0 and lines:
    m.add_feature(ref, DOUBLE_YELLOW)
  if median > 0:
    # Median edges: the forward carriageway lies on the right of the reference, so its
    # median edge runs against the reference to keep that road on its left.
    m.add_feature(offset(-median)[::-1], MEDIAN)
    if n_bwd:
      m.add_feature(offset(median), MEDIAN)
  if edges[0]:
    m.add_feature(offset(-half_f), EDGE)
  if edges[1]:
    m.add_feature(offset(half_b if n_bwd else median)[::-1], EDGE)
  if walk:
    for side, h in ((-1, half_f), (1, half_b if n_bwd else median)):
      for direction in (1, -1):
        # Two walkways per sidewalk, 1.2 m apart, one per walking direction, so people
        # walking towards each other never share a path.
        xy = offset(side * (h + SIDEWALK_OFFSET + 0.6 * direction))
        xy = xy if direction == 1 else xy[::-1].copy()
        lane = m.add_lane(xy, speed_limit=1.4, agent='ped', in_roadgraph=False)
        m.ped_entries.append(lane.id)
  return Corridor(ref=ref, fwd=fwd, bwd=bwd, half_fwd=half_f, half_bwd=half_b)


def _lane_width(rng: np.random.Generator) -> float:
  return float(rng.uniform(3.5, 3.9))


def _parking(rng: np.random.Generator, p_side: float) -> tuple[float, float]:
  """Parking strip widths (forward side, backward side) in m; each side has one with
  probability ``p_side``; both sides of a road share a width."""
  w = float(rng.uniform(*PARKING_WIDTH_M))
  has = rng.random(2) < p_side
  return (w if has[0] else 0.0, w if has[1] else 0.0)


def straight_road(rng: np.random.Generator, extent: MapExtent = MapExtent(),
                  curved: bool = False) -> RoadMap:
  """Multi-lane straight (or curved) two-way road, 1-3 lanes per direction, running
  ``extent.road_length`` (plus 0-40 m) each way from its centre (about 500-1000 m
  long); surface streets often have parking strips."""
  m = RoadMap('curved' if curved else 'straight')
  freeway = rng.random() < 0.3
  speed = rng.uniform(25.0, 31.0) if freeway else rng.uniform(11.0, 17.0)
  half = extent.road_length(speed) + rng.uniform(0.0, 40.0)
  if curved:
    # A straight run, an arc (radius 70-250 m, 30-90 degrees) and another straight:
    # the shape of most curved WOMD roads. The arc's middle lies within 40 m of the
    # map centre, so the log shows the bend.
    radius = rng.uniform(70.0, 250.0)
    sweep = np.deg2rad(rng.uniform(30, 90)) * rng.choice([-1, 1])
    arc_len = min(abs(sweep) * radius, 2 * half - 160.0)
    sweep = np.sign(sweep) * arc_len / radius
    lead = half - arc_len / 2 + rng.uniform(-40.0, 40.0)
    p1 = np.array([lead, 0.0])
    c = p1 + np.array([0.0, np.sign(sweep) * radius])
    a0 = -np.sign(sweep) * np.pi / 2
    a = geo.arc(c, radius, a0, a0 + sweep, 0.5)
    tail = 2 * half - lead - arc_len
    end = a[-1] + tail * np.array([np.cos(sweep), np.sin(sweep)])
    ref = geo.resample(geo.concat(geo.line([0, 0], p1), a, geo.line(a[-1], end)), 0.5)
  else:
    ref = geo.line([-half, 0.0], [half, 0.0], 0.5)
  ref = ref - ref[len(ref) // 2]
  ref = geo.transform(ref, rng.uniform(-np.pi, np.pi), rng.normal(0, 20, 2))
  n_fwd = int(rng.integers(2, 4) if freeway else rng.integers(1, 4))
  n_bwd = n_fwd if rng.random() < 0.8 else int(rng.integers(1, 3))
  median = rng.uniform(1.0, 3.0) if (freeway or rng.random() < 0.2) else 0.0
  parking = (0.0, 0.0) if freeway else _parking(rng, 0.75)
  c = build_corridor(m, ref, n_fwd, n_bwd, _lane_width(rng), speed,
                     kind=1 if freeway else 2, median=median, walk=not freeway,
                     parking=parking)
  m.entries = [ln.id for ln in c.fwd + c.bwd]
  m.center = ref[len(ref) // 2]
  return m


def _unit(theta: float) -> np.ndarray:
  return np.array([np.cos(theta), np.sin(theta)])


def _crossing_walkways(m: RoadMap, center: np.ndarray, u: np.ndarray, dist: float,
                       half_r: float, half_l: float, signal: bool) -> list[int]:
  """Crosswalk polygon across an arm plus a walkway each way over it.

  ``u`` points from the junction centre along the arm; the crossing lies ``dist`` m
  from the centre. Returns the ids of the walkways' approach lanes (signal-controlled
  when ``signal``).
  """
  n = np.array([-u[1], u[0]])
  p_r = center + dist * u - (half_r + SIDEWALK_OFFSET) * n
  p_l = center + dist * u + (half_l + SIDEWALK_OFFSET) * n
  w = 1.75
  poly = np.array([p_r - w * u + 2.0 * n, p_l - w * u - 2.0 * n, p_l + w * u - 2.0 * n,
                   p_r + w * u + 2.0 * n, p_r - w * u + 2.0 * n])
  m.add_feature(poly, int(T.CROSSWALK))
  approaches = []
  for a, b, side in ((p_r, p_l, 1), (p_l, p_r, -1)):
    off = 0.6 * side * u  # one walkway per direction, 1.2 m apart
    a, b = a + off, b + off
    d = (b - a) / np.linalg.norm(b - a)
    appr = m.add_lane(geo.line(a - 3.0 * d, a), speed_limit=1.4, agent='ped',
                      in_roadgraph=False, control='light' if signal else 'none')
    cross = m.add_lane(geo.line(a, b), speed_limit=1.4, agent='ped', in_roadgraph=False,
                       junction=True, priority=-1)
    # Short: people who crossed stop at its end, close to the road.
    tail = m.add_lane(geo.line(b, b + 3.0 * d), speed_limit=1.4, agent='ped',
                      in_roadgraph=False)
    appr.successors, cross.successors = [cross.id], [tail.id]
    m.ped_entries.append(appr.id)
    approaches.append(appr.id)
  return approaches


def junction(rng: np.random.Generator, extent: MapExtent = MapExtent(), arms: int = 4
             ) -> RoadMap:
  """A 4-way signalised intersection or (``arms=3``) a T-junction with stop signs on
  the minor road. Arms are two-way roads of 1-2 lanes per direction running
  ``extent.road_length`` (plus 0-30 m) from the centre, often with parking strips
  (none within ``NO_PARKING_NEAR_JUNCTION_M`` of the junction).
  """
  m = RoadMap('intersection' if arms == 4 else 't_junction')
  theta0 = rng.uniform(-np.pi, np.pi)
  center = rng.normal(0, 10, 2)
  m.center = center
  w = _lane_width(rng)
  n_axis = [int(rng.integers(1, 3)), int(rng.integers(1, 3))]
  if arms == 3:
    n_axis[1] = 1
  radius = rng.uniform(8.0, 12.0)
  speed = rng.uniform(11.0, 15.0)
  arm_ids = [0, 1, 2, 3] if arms == 4 else [0, 1, 2]
  approach = 5.0  # stop line this far before the curb return starts
  parking = {k: _parking(rng, 0.6) for k in arm_ids}
  # Arm k's forward (approach) side faces arm k + 1, its backward side arm k - 1. Its
  # mouth lies beyond the facing sides of both neighbours (lanes plus parking).
  half_f = {k: n_axis[k % 2] * w + parking[k][0] for k in arm_ids}
  half_b = {k: n_axis[k % 2] * w + parking[k][1] for k in arm_ids}
  info = {}
  for k in arm_ids:
    u = _unit(theta0 + k * np.pi / 2)
    n = n_axis[k % 2]
    beside = [half_b[(k + 1) % 4] if (k + 1) % 4 in half_b else 0.0,
              half_f[(k - 1) % 4] if (k - 1) % 4 in half_f else 0.0]
    d_curb = max(beside) + radius
    length = extent.road_length(speed) - d_curb + rng.uniform(0.0, 30.0)
    ref = geo.line(center + (d_curb + length) * u, center + d_curb * u, 0.5)
    minor = arms == 3 and k == 1
    c = build_corridor(m, ref, n, n, w, speed * (0.8 if minor else 1.0),
                       parking=parking[k],
                       park_range=(0.0, length - NO_PARKING_NEAR_JUNCTION_M))
    # Cut the incoming lanes at the stop line; the connector covers the last metres.
    cut = len(ref) - 1 - int(round(approach / 0.5))
    for lane in c.fwd:
      lane.xy = lane.xy[:cut + 1].copy()
      lane.control = 'light' if arms == 4 else ('stop' if minor else 'none')
      if minor:
        side = geo.normals(lane.xy)[-1]
        m.add_feature(lane.xy[-1:] - side * (w / 2 + 0.8), int(T.STOP_SIGN))
    m.entries += [ln.id for ln in c.fwd]
    info[k] = (u, c, d_curb, minor)
  # Curb returns between neighbouring arms (road on the left: they turn right).
  for k in arm_ids:
    k1 = (k + 1) % 4
    if k1 not in info:
      continue
    u, c, d, _ = info[k]
    u1, c1, d1, _ = info[k1]
    n = np.array([-u[1], u[0]])
    n1 = np.array([-u1[1], u1[0]])
    a = center + d * u + c.half_fwd * n       # right edge end of arm k
    b = center + d1 * u1 - c1.half_bwd * n1   # left edge start of arm k1
    m.add_feature(geo.hermite(a, np.arctan2(-u[1], -u[0]), b, np.arctan2(u1[1], u1[0]),
                              tension=1.17), EDGE)
  if arms == 3:
    # The far side of the major road is a straight edge across the junction mouth.
    u0, c0, d0, _ = info[0]
    u2, c2, d2, _ = info[2]
    n0 = np.array([-u0[1], u0[0]])
    n2 = np.array([-u2[1], u2[0]])
    m.add_feature(geo.line(center + d2 * u2 + c2.half_fwd * n2,
                           center + d0 * u0 - c0.half_bwd * n0), EDGE)
  # Connectors: right turn from the outermost lane, left from the innermost, through
  # from every lane to the same lane index.
  connectors = []
  groups: list[list[int]] = [[], []]
  for k in arm_ids:
    u, c, d, minor = info[k]
    heading_in = np.arctan2(-u[1], -u[0])
    moves = []
    for turn, dk in (('right', 1), ('through', 2), ('left', 3)):
      k2 = (k + dk) % 4
      if k2 not in info:
        continue
      out = info[k2][1].bwd
      if turn == 'through':
        moves += [(i, i, 'through') for i in range(min(len(c.fwd), len(out)))]
      elif turn == 'right':
        moves.append((len(c.fwd) - 1, len(out) - 1, 'right'))
      else:
        moves.append((0, 0, 'left'))
    for i_in, i_out, turn in moves:
      k2 = (k + {'right': 1, 'through': 2, 'left': 3}[turn]) % 4
      src, dst = c.fwd[i_in], info[k2][1].bwd[i_out]
      u2 = info[k2][0]
      p0 = src.xy[-1]
      p1 = p0 + approach * np.array([np.cos(heading_in), np.sin(heading_in)])
      curve = geo.hermite(p1, heading_in, dst.xy[0], np.arctan2(u2[1], u2[0]),
                          tension=1.0 if turn == 'through' else 1.17)
      xy = geo.resample(geo.concat(geo.line(p0, p1), curve), 0.5)
      prio = 2 if minor else (1 if turn == 'left' else 0)
      conn = m.add_lane(xy, speed_limit=speed, junction=True, priority=prio)
      conn.successors = [dst.id]
      src.successors.append(conn.id)
      connectors.append(conn)
    if arms == 4:
      groups[k % 2] += [ln.id for ln in c.fwd]
  preds: dict[int, set[int]] = {}
  for ln in m.lanes.values():
    for sc in ln.successors:
      preds.setdefault(sc, set()).add(ln.id)
  for a_ in connectors:
    for b_ in connectors:
      if a_.id < b_.id and a_.successors != b_.successors and not (
          preds.get(a_.id, set()) & preds.get(b_.id, set())):
        m.zone_pairs.add((a_.id, b_.id))
  # Crosswalks across every arm; with signals, people cross an arm while its traffic
  # is held (the other axis is green).
  for k in arm_ids:
    u, c, d, _ = info[k]
    appr = _crossing_walkways(m, center, u, d + approach / 2, c.half_fwd, c.half_bwd,
                              signal=arms == 4)
    if arms == 4:
      groups[(k + 1) % 2] += appr
    crossings = [ln for ln in m.lanes.values() if ln.agent == 'ped' and ln.junction
                 and any(ln.id in m.lanes[a].successors for a in appr)]
    veh = [ln for ln in m.lanes.values() if ln.agent == 'veh']
    for cl in crossings:
      for vl in veh:
        m.zone_pairs.add((cl.id, vl.id))
  m.signal_groups = groups if arms == 4 else []
  return m


def merge(rng: np.random.Generator, extent: MapExtent = MapExtent()) -> RoadMap:
  """A multi-lane road with an on-ramp joining its rightmost lane (zipper/yield merge).

  The main road's forward lanes are split at the join so lanes stay index-aligned
  (lane changes) and the ramp can share the downstream lane. The right edge runs along
  the main road to the gore, then back along the ramp's left side.
  """
  m = RoadMap('merge')
  w = _lane_width(rng)
  n = int(rng.integers(2, 4))
  n_bwd = n if rng.random() < 0.5 else 0
  median = rng.uniform(1.0, 2.5) if n_bwd else 0.0
  speed = rng.uniform(20.0, 29.0)
  reach = extent.road_length(speed)
  x0, xj, x1 = -reach - rng.uniform(0, 30), 0.0, reach + rng.uniform(0, 30)
  up = geo.line([x0, 0.0], [xj, 0.0])
  down = geo.line([xj, 0.0], [x1, 0.0])
  cu = build_corridor(m, up, n, 0, w, speed, kind=1, median=median, edges=(False, False),
                      walk=False)
  cd = build_corridor(m, down, n, 0, w, speed, kind=1, median=median, edges=(True, False),
                      walk=False)
  for a, b in zip(cu.fwd, cd.fwd):
    a.successors = [b.id]
  m.entries = [ln.id for ln in cu.fwd]
  if n_bwd:
    full = geo.line([x0, 0.0], [x1, 0.0])
    cb = build_corridor(m, full, 0, n_bwd, w, speed, kind=1, median=median,
                        edges=(False, True), walk=False)
    m.entries += [ln.id for ln in cb.bwd]
  else:
    m.add_feature(geo.line([x1, 0.0], [x0, 0.0]), EDGE)
  # Ramp: a straight approach then a tangent-continuous curve onto the right lane.
  lane_y = -(median + (n - 0.5) * w)
  ramp_len = rng.uniform(110.0, 150.0)
  lat = rng.uniform(18.0, 28.0)
  ang = rng.uniform(0.12, 0.2)
  p0 = np.array([xj - ramp_len, lane_y - lat])
  # A long straight approach: ramp arrivals enter beyond the SDC's tracking radius.
  approach = geo.line(p0 - 100.0 * _unit(ang), p0)
  curve = geo.hermite(p0, ang, [xj, lane_y], 0.0, tension=1.0)
  ramp_xy = geo.resample(geo.concat(approach, curve), 0.5)
  ramp = m.add_lane(ramp_xy, kind=1, speed_limit=speed * 0.75, priority=1)
  ramp.successors = [cd.fwd[-1].id]
  m.entries.append(ramp.id)
  half = median + n * w
  left = geo.offset(ramp_xy, w / 2)
  # Gore nose: the main edge ends where the ramp's left side is still GORE_NOSE_M below
  # it and a short cross piece joins the two. An acute nose would put edge samples
  # that face the ramp right next to the main lane, whose users would then read as
  # off the road (the off-road metric signs by the nearest edge sample).
  gore = np.nonzero(left[:, 1] > -half - GORE_NOSE_M)[0]
  g = max(gore[0] if len(gore) else len(left) - 1, 1)
  gx = left[g - 1, 0]
  main_edge = geo.line([x0, -half], [gx, -half])
  nose = geo.line([gx, -half], left[g - 1])
  m.add_feature(geo.concat(main_edge, nose, left[:g][::-1]), EDGE)
  right = geo.offset(ramp_xy, -w / 2)
  m.add_feature(right, EDGE)
  m.center = np.array([xj, lane_y])
  theta = rng.uniform(-np.pi, np.pi)
  shift = rng.normal(0, 20, 2)
  for lane in m.lanes.values():
    lane.xy = geo.transform(lane.xy, theta, shift)
  m.features = [Polyline(geo.transform(f.xyz, theta, shift), f.type, f.id)
                for f in m.features]
  m.center = geo.transform(m.center[None], theta, shift)[0]
  return m


def roundabout(rng: np.random.Generator, extent: MapExtent = MapExtent()) -> RoadMap:
  """A single-lane roundabout (counter-clockwise) with 3-4 two-way arms running
  ``extent.road_length`` (plus 0-30 m) from the centre, some with parking strips.

  Entering traffic yields to circulating traffic where it joins the ring; the ring is
  split into lanes between consecutive entry/exit points. The island edge runs
  clockwise and the outer edge counter-clockwise, so the ring is on both edges' left.
  """
  m = RoadMap('roundabout')
  c = rng.normal(0, 10, 2)
  m.center = c
  radius = rng.uniform(15.0, 21.0)
  ring_w = 5.5
  w = 4.0
  n_arms = int(rng.choice([3, 4], p=[0.3, 0.7]))
  theta0 = rng.uniform(-np.pi, np.pi)
  thetas = theta0 + np.arange(n_arms) * 2 * np.pi / n_arms
  speed = rng.uniform(11.0, 14.0)
  d_arm = radius + ring_w / 2 + 9.0   # arms end here (start of the flare)
  spacing = 2 * np.pi / n_arms
  delta = min(0.55 * 17.0 / radius, 0.28 * spacing)  # angular offset of entry/exit joins
  outer = radius + ring_w / 2
  arms = []
  for th in thetas:
    u = _unit(th)
    length = extent.road_length(speed) - d_arm + rng.uniform(0.0, 30.0)
    ref = geo.line(c + (d_arm + length) * u, c + d_arm * u, 0.5)
    cor = build_corridor(m, ref, 1, 1, w, speed, parking=_parking(rng, 0.5),
                         park_range=(0.0, length - NO_PARKING_NEAR_JUNCTION_M))
    m.entries.append(cor.fwd[0].id)
    arms.append(cor)
  # Ring lanes between consecutive nodes (exit before entry at each arm, CCW order).
  nodes = []
  for k, th in enumerate(thetas):
    nodes += [(th - delta, 'exit', k), (th + delta, 'entry', k)]
  ring = []
  for i, (a0, _, _) in enumerate(nodes):
    a1 = nodes[(i + 1) % len(nodes)][0]
    if a1 <= a0:
      a1 += 2 * np.pi
    ring.append(m.add_lane(geo.arc(c, radius, a0, a1), speed_limit=speed * 0.7))
  for i, lane in enumerate(ring):
    lane.successors = [ring[(i + 1) % len(ring)].id]
  for i, (ang, kind, k) in enumerate(nodes):
    tangent = ang + np.pi / 2
    p = c + radius * _unit(ang)
    if kind == 'entry':
      src = arms[k].fwd[0]
      conn = m.add_lane(geo.hermite(src.xy[-1], thetas[k] + np.pi, p, tangent,
                                    tension=1.1), speed_limit=speed * 0.7, junction=True,
                        priority=1)
      src.successors = [conn.id]
      conn.successors = [ring[i].id]
    else:
      dst = arms[k].bwd[0]
      conn = m.add_lane(geo.hermite(p, tangent, dst.xy[0], thetas[k], tension=1.1),
                        speed_limit=speed * 0.7, junction=True)
      # ring[i - 1] ends at this exit node.
      ring[i - 1].successors.append(conn.id)
      conn.successors = [dst.id]
  # Island edge clockwise; outer edge pieces from each arm's right edge around the
  # ring to the next arm's left edge.
  island = radius - ring_w / 2
  m.add_feature(geo.arc(c, island, theta0 + 2 * np.pi, theta0), EDGE)
  for k, th in enumerate(thetas):
    th1 = thetas[(k + 1) % n_arms]
    if th1 <= th:
      th1 += 2 * np.pi
    u, u1 = _unit(th), _unit(th1)
    n, n1 = np.array([-u[1], u[0]]), np.array([-u1[1], u1[0]])
    a = c + d_arm * u + arms[k].half_fwd * n
    b = c + d_arm * u1 - arms[(k + 1) % n_arms].half_bwd * n1
    off = min(1.6 * delta, 0.45 * spacing)
    g0, g1 = th + off, th1 - off
    p0, p1 = c + outer * _unit(g0), c + outer * _unit(g1)
    curb = geo.concat(
        geo.hermite(a, th + np.pi, p0, g0 + np.pi / 2, tension=1.0),
        geo.arc(c, outer, g0, g1),
        geo.hermite(p1, g1 + np.pi / 2, b, th1, tension=1.0))
    m.add_feature(geo.resample(curb, 0.5), EDGE)
  return m
