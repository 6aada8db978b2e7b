"""Who is in the scene: initial placement along lanes and arrivals at map entries.

Agents are placed lane by lane from the downstream end backwards with human headways
(standstill gap + speed x time headway, stretched by a per-scenario density), each on
a random route through its lane, at a speed it could hold behind the agent ahead and
still stop for the next stop line; roads run far beyond the logged scene, so the
agents nearest the map centre are kept. Arrivals enter at route starts (far from the
centre) during warm-up and log.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spacer_jax.data.generator.lanes import RouteTable
from spacer_jax.data.generator.maps import RoadMap
from spacer_jax.data.generator.traffic import CYCLIST, PEDESTRIAN, VEHICLE


@dataclass
class Placement:
  """Initial agent states ``(A,)``: type, route index, arc (m), speed (m/s), whether
  present at step 0 and the step an absent agent enters (-1: present from the start)."""

  type: np.ndarray
  route: np.ndarray
  s: np.ndarray
  v: np.ndarray
  active: np.ndarray
  spawn_step: np.ndarray


# Agent slots kept free of the initial placement: entries keep feeding traffic.
ARRIVAL_RESERVE = 8
# Pedestrians are placed within this distance of the map centre (m).
PED_RADIUS_M = 90.0


def _placement_key(xy: np.ndarray, heading: np.ndarray, center: np.ndarray) -> np.ndarray:
  """Priority ``(M,)`` of candidate positions ``(M, 2)`` (lower first): distance to the
  map centre, halved for agents heading towards it, which will drive into the logged
  scene (upstream traffic keeps the flow through the centre going during the log)."""
  rel = center - xy
  dist = np.hypot(rel[:, 0], rel[:, 1])
  towards = rel[:, 0] * np.cos(heading) + rel[:, 1] * np.sin(heading) > 0
  return np.where(towards, 0.5 * dist, dist)


def populate(rng: np.random.Generator, road: RoadMap, tab: RouteTable, max_agents: int,
             num_steps: int, density: float, pedestrians: bool, cyclists: bool
             ) -> Placement:
  """Places up to ``max_agents`` agents: pedestrians, vehicles, then arrivals.

  Every vehicle lane is filled with a queue; when that is more than the slots left,
  the agents nearest the map centre (by :func:`_placement_key`) are kept, since the
  long roads reach far beyond what the log shows. Dropping agents from a queue only
  widens gaps, so the kept speeds stay safe.
  """
  lanes = road.lanes
  by_lane: dict[int, list[int]] = {}
  for k, rt in enumerate(tab.lanes):
    for j, lid in enumerate(rt):
      by_lane.setdefault(lid, []).append((k, j))
  merge_into = {}
  for lane in lanes.values():
    for sc in lane.successors:
      merge_into[sc] = merge_into.get(sc, 0) + 1
  # Congestion level of the scenario: 0.5 (dense) .. 1.4 (sparse) headway multiplier.
  spread = rng.uniform(0.5, 1.4) / density
  types, routes, ss, vs, act, spawn = [], [], [], [], [], []

  def add(t, r, s, v, a, sp):
    types.append(t)
    routes.append(r)
    ss.append(s)
    vs.append(v)
    act.append(a)
    spawn.append(sp)

  # Pedestrians near the centre: candidates along every walkway, a random few kept.
  if pedestrians:
    walk = [ln for ln in lanes.values() if ln.agent == 'ped' and ln.id in by_lane
            and not ln.junction]
    budget = int(rng.integers(2, 16))
    cand = []
    for lane in walk:
      pos = rng.uniform(0, 40.0)
      while pos < lane.length - 2.0:
        k, j = by_lane[lane.id][rng.integers(len(by_lane[lane.id]))]
        cand.append((k, tab.lane_start[k, j] + pos))
        pos += rng.uniform(3.0, 60.0)
    if cand:
      r_c = np.array([c[0] for c in cand])
      s_c = np.array([c[1] for c in cand])
      xy, _ = tab.lookup(r_c, s_c)
      dist = np.hypot(*(xy - road.center).T)
      near = np.flatnonzero(dist < PED_RADIUS_M)
      if len(near) < budget:
        near = np.argsort(dist, kind='stable')[:budget]
      for i in np.sort(rng.permutation(near)[:min(budget, max_agents)]):
        add(PEDESTRIAN, r_c[i], s_c[i], rng.uniform(0.0, 1.4), True, -1)

  veh_lanes = [ln for ln in lanes.values() if ln.agent == 'veh' and not ln.junction
               and ln.id in by_lane]
  rng.shuffle(veh_lanes)
  veh = []  # (type, route, s, v) of the candidate queue
  for lane in veh_lanes:
    length = lane.length
    end_margin = 25.0 if any(merge_into.get(sc, 0) > 1 for sc in lane.successors) else 4.0
    pos = length - end_margin - rng.uniform(0, 20.0 * spread)
    ahead_v = None
    ahead_gap = np.inf
    bike_lane = cyclists and lane.right is None and lane.kind == 2
    while pos > 3.0:
      k, j = by_lane[lane.id][rng.integers(len(by_lane[lane.id]))]
      s = tab.lane_start[k, j] + pos * (tab.lane_end[k, j] - tab.lane_start[k, j]) / length
      t = CYCLIST if bike_lane and rng.random() < 0.08 else VEHICLE
      vlim = tab.vmax[k, min(int(s / tab.ds[k]), tab.vmax.shape[1] - 1)]
      v = vlim * rng.uniform(0.75, 1.0) * (0.4 if t == CYCLIST else 1.0)
      # Hold speed one could keep behind the agent ahead ...
      if ahead_v is not None:
        v = min(v, max(ahead_gap - 2.0, 0.0) / 1.2)
      # ... and still stop comfortably at the next stop line or the lane end's control.
      if lane.control != 'none':
        v = min(v, np.sqrt(2 * 2.0 * max(length - pos - 3.0, 0.0)))
      veh.append((t, k, s, v))
      half = 6.5 if t == VEHICLE else 1.0  # generous half length (trucks ~12 m)
      step = half * 2 + 2.5 + v * rng.uniform(1.0, 2.0) * spread
      ahead_v, ahead_gap = v, step - 2 * half
      pos -= step
  room = max(max_agents - len(types) - ARRIVAL_RESERVE, 0)
  if veh:
    r_v = np.array([c[1] for c in veh])
    s_v = np.array([c[2] for c in veh])
    xy, yaw = tab.lookup(r_v, s_v)
    keep = np.sort(np.argsort(_placement_key(xy, yaw, road.center), kind='stable')[:room])
    for i in keep:
      add(veh[i][0], veh[i][1], veh[i][2], veh[i][3], True, -1)
  # Arrivals at vehicle entries during warm-up and log.
  entry_routes = [k for k, rt in enumerate(tab.lanes) if rt[0] in road.entries]
  for lid in road.entries:
    opts = [k for k in entry_routes if tab.lanes[k][0] == lid]
    if not opts:
      continue
    rate = lanes[lid].speed_limit / (30.0 * spread)   # vehicles per second
    t = rng.exponential(1 / rate)
    while t < num_steps * 0.1 and len(types) < max_agents:
      k = opts[rng.integers(len(opts))]
      vlim = tab.vmax[k, 0] * rng.uniform(0.7, 0.95)
      add(VEHICLE, k, 6.5, vlim, False, int(t / 0.1))
      t += rng.exponential(1 / rate)
  return Placement(type=np.array(types, np.int64), route=np.array(routes, np.int64),
                   s=np.array(ss), v=np.array(vs), active=np.array(act, bool),
                   spawn_step=np.array(spawn, np.int64))
