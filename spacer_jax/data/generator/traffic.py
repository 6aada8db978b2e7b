"""Human-like traffic along lane routes: spawning, car following, yielding, stopping,
lane changes. Host-side numpy, vectorised over agents at each 0.1 s step.

Every agent (vehicle, cyclist or pedestrian) moves along a route at arc position ``s``
with speed ``v`` under the Intelligent Driver Model with its own driver parameters.
Its leaders are:
  * agents on a shared part of its route, compared in one common arc coordinate, so
    merges order vehicles by distance to the join (a yielding approach adds its gap
    acceptance distance to that ordering);
  * a stationary obstacle at the entry of a crossing zone while another agent holds
    it or will reach it first / has the right of way (gap acceptance);
  * stop lines: red and (when it can stop) yellow lights, unserved stop signs.
Lane changes move an agent to the parallel lane's route and blend its lateral offset
to zero with a quintic; during the change it also stays a leader in its old lane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spacer_jax.data.generator.lanes import RouteTable
from spacer_jax.data.generator.maps import RoadMap

DT = 0.1
A_MIN, A_MAX = -6.0, 3.0
# Per-step change of acceleration (m/s^2 per 0.1 s): bounded jerk, braking may
# build up faster than throttle, as in human driving.
JERK_UP, JERK_DOWN = 0.5, 1.5
# Secondary (old-lane) presences available for simultaneous lane changes.
LC_SLOTS = 6
VEHICLE, PEDESTRIAN, CYCLIST = 1, 2, 3


@dataclass
class Agents:
  """Static per-agent attributes ``(A,)``."""

  type: np.ndarray
  length: np.ndarray
  width: np.ndarray
  height: np.ndarray
  v0f: np.ndarray       # desired speed as a fraction of the route's advisory speed
  headway: np.ndarray   # time headway T (s)
  s0: np.ndarray        # standstill gap (m)
  amax: np.ndarray      # max acceleration (m/s^2)
  bcomf: np.ndarray     # comfortable deceleration (m/s^2)
  crit_gap: np.ndarray  # accepted time gap at crossings/merges (s)
  lc_rate: np.ndarray   # lane-change propensity (per second, when a neighbour exists)

  @property
  def num(self) -> int:
    return len(self.type)


@dataclass
class Rollout:
  """Simulated agent states ``(A, T)`` over the logged window."""

  route: np.ndarray
  s: np.ndarray
  v: np.ndarray
  d: np.ndarray        # lateral offset from the route centreline (m, left positive)
  d_dot: np.ndarray    # its time derivative (m/s)
  active: np.ndarray
  agents: Agents


def sample_agents(rng: np.random.Generator, types: np.ndarray) -> Agents:
  """Sizes and heterogeneous driver parameters per agent type."""
  n = len(types)
  veh, ped, cyc = types == VEHICLE, types == PEDESTRIAN, types == CYCLIST
  length = np.empty(n)
  width = np.empty(n)
  height = np.empty(n)
  # Cars ~4.5 x 1.9 x 1.6 m; ~6% trucks/buses.
  big = veh & (rng.random(n) < 0.06)
  length[veh] = np.clip(rng.normal(4.6, 0.35, veh.sum()), 3.6, 5.6)
  width[veh] = np.clip(rng.normal(1.9, 0.08, veh.sum()), 1.65, 2.1)
  height[veh] = np.clip(rng.normal(1.6, 0.15, veh.sum()), 1.3, 2.2)
  length[big] = rng.uniform(7.5, 12.0, big.sum())
  width[big] = rng.uniform(2.4, 2.55, big.sum())
  height[big] = rng.uniform(2.8, 3.5, big.sum())
  length[ped] = rng.uniform(0.6, 1.0, ped.sum())
  width[ped] = rng.uniform(0.6, 1.0, ped.sum())
  height[ped] = rng.uniform(1.5, 1.95, ped.sum())
  length[cyc] = rng.uniform(1.6, 2.0, cyc.sum())
  width[cyc] = rng.uniform(0.6, 0.8, cyc.sum())
  height[cyc] = rng.uniform(1.5, 1.9, cyc.sum())
  v0f = np.where(veh, rng.uniform(0.85, 1.15, n), 1.0)
  v0f = np.where(big, v0f * 0.85, v0f)
  v0f = np.where(ped, rng.uniform(0.7, 1.15, n), v0f)
  # Some pedestrians stand (waiting, chatting): zero desired speed.
  v0f = np.where(ped & (rng.random(n) < 0.15), 0.0, v0f)
  v0f = np.where(cyc, rng.uniform(0.3, 0.5, n), v0f)
  headway = np.where(ped, 0.6, rng.uniform(0.9, 2.0, n))
  s0 = np.where(ped, rng.uniform(0.4, 0.8, n), rng.uniform(1.8, 3.2, n))
  amax = np.where(ped, 0.8, rng.uniform(1.0, 2.5, n))
  amax = np.where(big, 0.8, amax)
  bcomf = np.where(ped, 1.5, rng.uniform(1.6, 3.0, n))
  crit_gap = rng.uniform(3.0, 6.0, n)
  lc_rate = np.where(veh & ~big, rng.uniform(0.0, 0.04, n), 0.0)
  return Agents(type=types, length=length, width=width, height=height, v0f=v0f,
                headway=headway, s0=s0, amax=amax, bcomf=bcomf, crit_gap=crit_gap,
                lc_rate=lc_rate)


def _quintic(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Smooth step 0 -> 1 on u in [0, 1] and its derivative (zero slope/curvature ends)."""
  u = np.clip(u, 0.0, 1.0)
  return 10 * u**3 - 15 * u**4 + 6 * u**5, 30 * u**2 - 60 * u**3 + 30 * u**4


class TrafficSim:
  """Steps all agents jointly. Build with initial states, then call :meth:`run`."""

  def __init__(self, rng: np.random.Generator, road: RoadMap, table: RouteTable,
               agents: Agents, route: np.ndarray, s: np.ndarray, v: np.ndarray,
               active: np.ndarray, spawn_step: np.ndarray,
               light_state: dict[int, np.ndarray]):
    """Args:
      rng: random generator (lane-change decisions).
      road, table: the map and its route table.
      agents: static attributes ``(A,)``.
      route, s, v: initial route index, arc position (m) and speed (m/s) ``(A,)``.
      active: agents present at step 0 ``(A,)``.
      spawn_step: step at which an inactive agent wants to enter (-1: never) ``(A,)``.
      light_state: lane id -> per-step signal state ``(steps,)`` (Waymax values).
    """
    self.rng, self.road, self.tab, self.ag = rng, road, table, agents
    a = agents.num
    e = a + LC_SLOTS
    self.num_agents = a
    self.route = np.zeros(e, np.int64)
    self.s = np.zeros(e)
    self.v = np.zeros(e)
    self.active = np.zeros(e, bool)
    self.route[:a], self.s[:a], self.v[:a], self.active[:a] = route, s, v, active
    self.owner = np.concatenate([np.arange(a), np.full(LC_SLOTS, -1)])
    self.half = np.concatenate([agents.length / 2, np.zeros(LC_SLOTS)])
    self.acc = np.zeros(a)
    self.spawn_step = spawn_step.copy()
    self.finished = np.zeros(a, bool)
    # Lane change state.
    self.lc_t = np.full(a, -1.0)
    self.lc_dur = np.ones(a)
    self.lc_d0 = np.zeros(a)
    self.lc_slot = np.full(a, -1)
    self.stop_served = np.full(a, -np.inf)  # arc of the last stop sign served
    self.lights = light_state
    self._build_stops()
    self._crit_d = np.concatenate([agents.crit_gap, np.zeros(LC_SLOTS)])
    idx = np.arange(e)
    self._upper = idx[None, :] > idx[:, None]
    self._dirty = True

  def _build_stops(self):
    tab = self.tab
    k = max(1, max(len(x) for x in tab.stops))
    r = tab.num_routes
    self.stop_s = np.full((r, k), np.inf)
    self.stop_lane = np.full((r, k), -1)
    self.stop_sign = np.zeros((r, k), bool)
    for i, st in enumerate(tab.stops):
      for j, (pos, lid, ctl) in enumerate(st):
        self.stop_s[i, j], self.stop_lane[i, j] = pos, lid
        self.stop_sign[i, j] = ctl == 'stop'
    self.light_lanes = np.array(sorted(self.lights), np.int64)
    if len(self.light_lanes):
      self.light_table = np.stack([self.lights[ln] for ln in self.light_lanes])

  # ---------------------------------------------------------------------------------
  def _obstacles(self, step: int) -> np.ndarray:
    """Gap (m) to the nearest stop-line obstacle per agent ``(A,)`` (inf if none)."""
    a = self.num_agents
    r, s, v = self.route[:a], self.s[:a], self.v[:a]
    front = s + self.half[:a]
    stop_s = self.stop_s[r]
    ahead = stop_s > front[:, None] - 0.3
    gap = stop_s - 0.5 - front[:, None]
    block = np.zeros_like(ahead)
    lanes = self.stop_lane[r]
    if len(self.light_lanes):
      idx = np.searchsorted(self.light_lanes, lanes)
      idx = np.clip(idx, 0, len(self.light_lanes) - 1)
      has = self.light_lanes[idx] == lanes
      state = np.where(has, self.light_table[idx, min(step, self.light_table.shape[1] - 1)],
                       0)
      red = (state == 4) | (state == 1) | (state == 7)
      # On yellow, stop if it can be done at a comfortable 3.5 m/s^2.
      yellow = (state == 5) | (state == 2)
      can_stop = gap > v[:, None] ** 2 / (2 * 3.5)
      block |= has & (red | (yellow & can_stop))
    sign = self.stop_sign[r] & (stop_s > self.stop_served[:, None] + 1e-3)
    block |= sign
    # Serve a stop sign: stopped close to the line.
    served = sign & ahead & (v[:, None] < 0.3) & (gap < self.ag.s0[:, None] + 3.0)
    if served.any():
      rows, cols = np.nonzero(served)
      self.stop_served[rows] = np.maximum(self.stop_served[rows], stop_s[rows, cols])
      block &= ~served
    gap = np.where(ahead & block, gap, np.inf)
    return gap.min(axis=1)

  def _pair_cache(self):
    """Route-pair relations gathered per entry pair ``(E, E)``; rebuilt only when an
    agent changes route or enters (the tables are static per route pair)."""
    tab = self.tab
    ri, rj = self.route[:, None], self.route[None, :]
    delta = tab.delta[ri, rj]
    shared = ~np.isnan(delta) & (self.owner[:, None] != self.owner[None, :])
    self._c_delta = np.where(shared, delta, 0.0)
    self._c_shared = shared
    self._c_end = np.where(shared, tab.common_end[ri, rj], -np.inf)
    self._c_join = np.where(shared, tab.join[ri, rj], 0.0)
    self._c_join_t = self._c_join.T
    self._c_yield = tab.priority[ri, rj] == 1
    self._c_yield_t = self._c_yield.T
    self._dirty = False

  def _leaders(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise following: gaps ``(E, E)`` and lead speeds, plus a stop gap ``(E,)``."""
    if self._dirty:
      self._pair_cache()
    s, v, h, act = self.s, self.v, self.half, self.active
    si, sj = s[:, None], s[None, :]
    pos = sj + self._c_delta
    end = self._c_end
    shared = self._c_shared & act[None, :] & act[:, None] & (si < end) & (
        pos < end + h[None, :] + 1.0)
    join_i = self._c_join
    # Gap acceptance at a join, as a distance: a yielding agent places itself this much
    # farther from the join when ordering against an agent with right of way.
    pen_i = np.where(self._c_yield & (si < join_i), self._crit_d[:, None] * np.maximum(
        v[None, :], 5.0), 0.0)
    pen_j = np.where(self._c_yield_t & (sj < self._c_join_t), self._crit_d[None, :]
                     * np.maximum(v[:, None], 5.0), 0.0)
    key_i = si - pen_i
    key_j = pos - pen_j
    ahead = (key_j > key_i) | ((key_j == key_i) & self._upper)
    lead = shared & ahead
    hh = h[:, None] + h[None, :]
    gap = pos - si - hh
    # A leader that is not physically ahead yet (it comes from the other branch of a
    # join and has the right of way): wait before the join.
    wait = lead & (gap <= 0.0) & (si + h[:, None] < join_i)
    stop_gap = np.where(wait, join_i - 1.0 - si - h[:, None], np.inf).min(axis=1)
    gap = np.where(lead & ~wait, gap, np.inf)
    return gap, np.broadcast_to(v[None, :], gap.shape), stop_gap

  def _zone_gaps(self) -> np.ndarray:
    """Gap (m) to the entry of a crossing zone this agent must not enter ``(E,)``."""
    if self.zone_pairs is None:
      return np.full(len(self.s), np.inf)
    pi, pj, k = self.zone_pairs
    out = np.full(len(self.s), np.inf)
    if len(pi) == 0:
      return out
    tab = self.tab
    act = self.active[pi] & self.active[pj]
    ri, rj = self.route[pi], self.route[pj]
    za = tab.zone[ri, rj, k]
    zb = tab.zone[rj, ri, k]
    si, sj, vi, vj = self.s[pi], self.s[pj], self.v[pi], self.v[pj]
    hi, hj = self.half[pi], self.half[pj]
    dist_i = za[:, 0] - si - hi
    dist_j = zb[:, 0] - sj - hj
    inside_i = (dist_i < 0.5) & (si - hi < za[:, 1] + 0.5)
    inside_j = (dist_j < 1.0) & (sj - hj < zb[:, 1] + 1.0)
    passed_j = sj - hj > zb[:, 1] + 0.5
    # Committed: cannot stop before the zone at 4 m/s^2.
    commit_j = inside_j | (dist_j < vj**2 / 8.0 + 0.5)
    commit_i = dist_i < vi**2 / 8.0 + 0.5
    eta_i = dist_i / np.maximum(vi, 1.0)
    eta_j = dist_j / np.maximum(vj, 1.0)
    occ_j = (zb[:, 1] - zb[:, 0] + 2 * hj) / np.maximum(vj, 1.5)
    occ_i = (za[:, 1] - za[:, 0] + 2 * hi) / np.maximum(vi, 1.5)
    y = tab.zone_yield[ri, rj, k]
    crit = np.concatenate([self.ag.crit_gap, np.zeros(LC_SLOTS)])[pi]
    # Time windows overlap (with a margin): only then is there anything to resolve.
    clash = (eta_j < eta_i + occ_i + 1.5) & (eta_i < eta_j + occ_j + 1.5)
    first_j = (eta_j < eta_i) | ((eta_j == eta_i) & (pj < pi))
    yield_ = np.where(y > 0, eta_j < crit + occ_i,
                      np.where(y < 0, commit_j & clash, clash & first_j))
    must_wait = act & ~inside_i & ~passed_j & (inside_j | (commit_j & ~commit_i & clash)
                                               | (yield_ & ~commit_i))
    gap = np.where(must_wait, dist_i - 1.0, np.inf)
    np.minimum.at(out, pi, gap)
    return out

  def set_zone_pairs(self):
    """Agent pairs whose routes cross (rebuilt after lane changes)."""
    self._dirty = True
    tab = self.tab
    r = self.route
    has = ~np.isnan(tab.zone[r[:, None], r[None, :], :, 0])
    own = self.owner
    has &= (own[:, None] != own[None, :])[..., None]
    self.zone_pairs = np.nonzero(has)

  # ---------------------------------------------------------------------------------
  def step(self, step: int):
    a = self.num_agents
    ag = self.ag
    self._spawn(step)
    gap, vl, stop_gap = self._leaders()
    zone_gap = self._zone_gaps()
    obst = np.minimum(np.minimum(stop_gap, zone_gap)[:a], self._obstacles(step))
    # Lane-changing agents also respect their old lane's leader (secondary entry).
    sec = np.nonzero(self.owner[a:] >= 0)[0] + a
    r, s, v = self.route[:a], self.s[:a], self.v[:a]
    ds = self.tab.ds[r]
    vmax = self.tab.vmax[r, np.minimum((s / ds).astype(np.int64), self.tab.vmax.shape[1] - 1)]
    v0 = np.maximum(vmax * ag.v0f, 0.0)
    free = 1.0 - (v / np.maximum(v0, 0.2)) ** 4
    free = np.where(v0 < 0.05, -v / 0.2, free)
    sq = 2 * np.sqrt(ag.amax * ag.bcomf)
    def interaction(g, lead_v, vv, rows):
      star = ag.s0[rows, None] + np.maximum(
          0.0, vv[:, None] * ag.headway[rows, None] + vv[:, None] * (vv[:, None] - lead_v)
          / sq[rows, None])
      return ((star / np.maximum(g, 0.05)) ** 2).max(axis=1)
    rows = np.arange(a)
    inter = interaction(gap[:a], vl[:a], v, rows)
    inter = np.maximum(inter, interaction(obst[:, None], np.zeros((a, 1)), v, rows))
    if len(sec):
      own = self.owner[sec]
      inter2 = interaction(np.minimum(gap[sec], zone_gap[sec, None]), vl[sec], v[own], own)
      inter[own] = np.maximum(inter[own], inter2)
    acc = ag.amax * (free - inter)
    acc = np.clip(acc, A_MIN, np.minimum(A_MAX, ag.amax))
    acc = np.clip(acc, self.acc - JERK_DOWN, self.acc + JERK_UP)
    acc = np.clip(acc, A_MIN, A_MAX)
    v_new = np.maximum(v + acc * DT, 0.0)
    acc = np.where(self.active[:a], (v_new - v) / DT, 0.0)
    self.acc = acc
    self.s[:a] += np.where(self.active[:a], (v + v_new) / 2 * DT, 0.0)
    self.v[:a] = np.where(self.active[:a], v_new, 0.0)
    if len(sec):
      own = self.owner[sec]
      self.s[sec] += (v[own] + v_new[own]) / 2 * DT
      self.v[sec] = v_new[own]
    # Leave the map at the end of the route.
    done = self.active[:a] & (self.s[:a] > self.tab.length[r])
    if done.any():
      self.active[:a] &= ~done
      self.finished |= done
      for i in np.nonzero(done)[0]:
        self._end_lane_change(i)
    self._update_lane_changes()
    if step % 10 == 5:
      self._maybe_change_lanes()

  def _spawn(self, step: int):
    a = self.num_agents
    want = np.nonzero((self.spawn_step >= 0) & (self.spawn_step <= step)
                      & ~self.active[:a])[0]
    if len(want) == 0:
      return
    # Enter only if the route's start is clear of everyone sharing it.
    d = self.tab.delta[self.route[want][:, None], self.route[None, :]]
    ok = self.active[None, :] & ~np.isnan(d)
    pos = self.s[None, :] + np.where(ok, d, 0.0)
    sw, hw = self.s[want, None], self.half[want, None]
    clear_ahead = (self.ag.s0[want] + 2.0 + self.v[want] * self.ag.headway[want])[:, None]
    near = ok & (pos - self.half[None, :] < sw + hw + clear_ahead) & (
        pos + self.half[None, :] > sw - hw - 8.0)
    blocked = near.any(axis=1)
    free = np.nonzero(~blocked)[0]
    if len(free):
      # One arrival per step: two arrivals on routes sharing an entry would otherwise
      # appear on top of each other (neither sees the other before it is active).
      i = want[free[0]]
      self.active[i] = True
      self.spawn_step[i] = -1
      self.set_zone_pairs()

  # ---------------------------------------------------------------------------------
  def _update_lane_changes(self):
    on = self.lc_t >= 0
    if not on.any():
      return
    self.lc_t[on] += DT
    for i in np.nonzero(on & (self.lc_t >= self.lc_dur))[0]:
      self._end_lane_change(i)

  def _end_lane_change(self, i: int):
    if self.lc_slot[i] >= 0:
      slot = self.num_agents + self.lc_slot[i]
      self.owner[slot] = -1
      self.active[slot] = False
      self.lc_slot[i] = -1
    self.lc_t[i] = -1.0
    self.lc_d0[i] = 0.0

  def lateral(self) -> tuple[np.ndarray, np.ndarray]:
    """Current lateral offset (m) and its rate (m/s) per agent ``(A,)``."""
    on = self.lc_t >= 0
    q, dq = _quintic(np.where(on, self.lc_t / self.lc_dur, 1.0))
    return self.lc_d0 * (1 - q), -self.lc_d0 * dq / self.lc_dur

  def _maybe_change_lanes(self):
    a = self.num_agents
    tab, lanes = self.tab, self.road.lanes
    ag = self.ag
    cand = self.active[:a] & (self.lc_t < 0) & (self.v[:a] > 6.0) & (ag.lc_rate > 0)
    cand &= self.rng.random(a) < ag.lc_rate
    free_slots = [k for k in range(LC_SLOTS) if self.owner[a + k] < 0]
    for i in np.nonzero(cand)[0]:
      if not free_slots:
        return
      r = self.route[i]
      li = tab.lane_at(np.array([r]), np.array([self.s[i]]))[0]
      lid = tab.lanes[r][li]
      lane = lanes[lid]
      if lane.junction:
        continue
      options = [x for x in (lane.left, lane.right) if x is not None]
      if not options:
        continue
      target = options[self.rng.integers(len(options))]
      local = self.s[i] - tab.lane_start[r, li]
      lane_len = tab.lane_end[r, li] - tab.lane_start[r, li]
      frac = local / lane_len
      dur = float(self.rng.uniform(3.5, 6.0))
      tl = lanes[target]
      if (1 - frac) * tl.length < self.v[i] * dur + 30.0:
        continue
      # Prefer continuing straight: routes through the target lane, any is fine.
      new_routes = [k for k, rt in enumerate(tab.lanes) if target in rt]
      if not new_routes:
        continue
      nr = new_routes[self.rng.integers(len(new_routes))]
      ti = tab.lanes[nr].index(target)
      ns = tab.lane_start[nr, ti] + frac * (tab.lane_end[nr, ti] - tab.lane_start[nr, ti])
      if not self._gap_ok(i, nr, ns):
        continue
      old_xy, _ = tab.lookup(np.array([r]), np.array([self.s[i]]))
      new_xy, new_yaw = tab.lookup(np.array([nr]), np.array([ns]))
      nrm = np.array([-np.sin(new_yaw[0]), np.cos(new_yaw[0])])
      d0 = float((old_xy[0] - new_xy[0]) @ nrm)
      slot = free_slots.pop()
      e = a + slot
      self.owner[e] = i
      self.route[e], self.s[e], self.v[e] = r, self.s[i], self.v[i]
      self.half[e] = self.half[i]
      self.active[e] = True
      self.lc_slot[i] = slot
      self.route[i], self.s[i] = nr, ns
      self.lc_t[i], self.lc_dur[i], self.lc_d0[i] = 0.0, dur, d0
      self.set_zone_pairs()

  def _gap_ok(self, i: int, nr: int, ns: float) -> bool:
    """Safe gaps ahead and behind at arc ``ns`` of route ``nr`` (accepted by humans)."""
    d = self.tab.delta[nr, self.route]
    ok = self.active & ~np.isnan(d) & (self.owner != i)
    pos = self.s + np.nan_to_num(d)
    rel = pos - ns
    h = self.half[i] + self.half
    vi = self.v[i]
    front = ok & (rel >= 0) & (rel - h < max(8.0, 1.2 * vi))
    back = ok & (rel < 0) & (-rel - h < np.maximum(10.0, 1.5 * self.v))
    return not (front.any() or back.any())

  def run(self, num_steps: int) -> tuple[np.ndarray, ...]:
    """Runs ``num_steps`` steps; returns per-step (route, s, v, d, d_dot, active)."""
    a = self.num_agents
    self.set_zone_pairs()
    out = [np.zeros((a, num_steps), np.int64), np.zeros((a, num_steps)),
           np.zeros((a, num_steps)), np.zeros((a, num_steps)), np.zeros((a, num_steps)),
           np.zeros((a, num_steps), bool)]
    for t in range(num_steps):
      if t > 0:
        self.step(t)
      d, dd = self.lateral()
      out[0][:, t] = self.route[:a]
      out[1][:, t] = self.s[:a]
      out[2][:, t] = self.v[:a]
      out[3][:, t] = d
      out[4][:, t] = dd
      out[5][:, t] = self.active[:a]
    return tuple(out)
