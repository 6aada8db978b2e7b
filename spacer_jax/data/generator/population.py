"""Who is in the scene: initial placement along lanes and arrivals at map entries.

Agents are placed lane by lane from the downstream end backwards with human headways
(standstill gap + speed x time headway, stretched by a per-scenario density), each on
a random route through its lane, at a speed it could hold behind the agent ahead and
still stop for the next stop line. Arrivals enter at route starts during the log.
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


def populate(rng: np.random.Generator, road: RoadMap, tab: RouteTable, max_agents: int,
             num_steps: int, density: float, pedestrians: bool, cyclists: bool
             ) -> Placement:
  """Places up to ``max_agents`` agents (vehicles first, then pedestrians)."""
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

  veh_lanes = [ln for ln in lanes.values() if ln.agent == 'veh' and not ln.junction
               and ln.id in by_lane]
  rng.shuffle(veh_lanes)
  for lane in veh_lanes:
    length = lane.length
    end_margin = 25.0 if any(merge_into.get(sc, 0) > 1 for sc in lane.successors) else 4.0
    pos = length - end_margin - rng.uniform(0, 20.0 * spread)
    ahead_v = None
    ahead_gap = np.inf
    bike_lane = cyclists and lane.right is None and lane.kind == 2
    while pos > 3.0 and len(types) < max_agents:
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
      add(t, k, s, v, True, -1)
      half = 6.5 if t == VEHICLE else 1.0  # generous half length (trucks ~12 m)
      step = half * 2 + 2.5 + v * rng.uniform(1.0, 2.0) * spread
      ahead_v, ahead_gap = v, step - 2 * half
      pos -= step
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
  if pedestrians:
    walk = [ln for ln in lanes.values() if ln.agent == 'ped' and ln.id in by_lane
            and not ln.junction]
    n_ped = 0
    budget = int(rng.integers(2, 16))
    rng.shuffle(walk)
    for lane in walk:
      pos = rng.uniform(0, 40.0)
      while pos < lane.length - 2.0 and n_ped < budget and len(types) < max_agents:
        k, j = by_lane[lane.id][rng.integers(len(by_lane[lane.id]))]
        s = tab.lane_start[k, j] + pos
        add(PEDESTRIAN, k, s, rng.uniform(0.0, 1.4), True, -1)
        n_ped += 1
        pos += rng.uniform(3.0, 60.0)
  return Placement(type=np.array(types, np.int64), route=np.array(routes, np.int64),
                   s=np.array(ss), v=np.array(vs), active=np.array(act, bool),
                   spawn_step=np.array(spawn, np.int64))
