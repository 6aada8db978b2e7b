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
  * stop lines: red and (when it can stop) yellow lights, unserved stop signs;
  * for pedestrians, the end of their route, where they stop (vehicles leave there).
Lane changes move an agent to the point abreast of it on the parallel lane's route and
blend its lateral offset to zero with a quintic; during the change it also stays a
leader in its old lane. Incidents (optional, :class:`Incidents`): chosen vehicles brake
hard to a standstill and stay there (a stalled car) or to a fraction of their speed for
a few seconds (a slow-down), and whoever follows them has to react. Arrivals drive in
at their arrival speed, first come first served per entry lane, once there is room to
follow (and brake for) whoever is ahead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spacer_jax.data.generator.lanes import RouteTable
from spacer_jax.data.generator.maps import MAX_SPEED_FACTOR, RoadMap

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


@dataclass
class Incidents:
  """Scheduled hard braking of chosen vehicles ``(A,)`` per agent.

  Attributes:
    start: simulation step the braking starts (-1: no incident).
    decel: braking deceleration, m/s^2 (positive).
    fraction: target speed as a fraction of the speed at ``start`` (0: stall).
    steps: steps from ``start`` until the vehicle drives normally again (a stall holds
      to the end of the simulation).
  """

  start: np.ndarray
  decel: np.ndarray
  fraction: np.ndarray
  steps: np.ndarray

  @staticmethod
  def none(num_agents: int) -> Incidents:
    return Incidents(start=np.full(num_agents, -1, np.int64), decel=np.zeros(num_agents),
                     fraction=np.ones(num_agents), steps=np.zeros(num_agents, np.int64))


# Vehicles per scene that get an incident when a scene has them.
INCIDENT_VEHICLES = 2
# Stalls and slow-downs are drawn with equal probability; a slow-down holds its lower
# speed for a few seconds; both brake at a firm but human rate.
INCIDENT_DECEL = (2.5, 5.5)
SLOWDOWN_FRACTION = (0.2, 0.6)
SLOWDOWN_SECONDS = (3.0, 6.0)
# Incidents start in the first 4.5 s of the log (after warm-up), so the reaction of the
# vehicles behind falls in the 8 s future of a WOMD-style scene (history ends at 1.0 s).
INCIDENT_WINDOW_S = (0.5, 4.5)


def sample_incidents(rng: np.random.Generator, types: np.ndarray, active: np.ndarray,
                     v: np.ndarray, warmup_steps: int, num_steps: int) -> Incidents:
  """Chooses up to ``INCIDENT_VEHICLES`` moving vehicles present at step 0 and draws
  their incidents (see :class:`Incidents`).

  Args:
    rng: the incident stream (separate, so traffic without incidents is unchanged).
    types, active, v: agent types, presence at step 0 and speeds (m/s) ``(A,)``.
    warmup_steps: simulated steps before the first logged step.
    num_steps: simulated steps in all.
  """
  out = Incidents.none(len(types))
  moving = np.flatnonzero((types == VEHICLE) & active & (v >= 5.0))
  if not len(moving):
    return out
  chosen = rng.choice(moving, size=min(INCIDENT_VEHICLES, len(moving)), replace=False)
  for i in chosen:
    lo, hi = (warmup_steps + int(round(t / DT)) for t in INCIDENT_WINDOW_S)
    out.start[i] = rng.integers(lo, hi + 1)
    out.decel[i] = rng.uniform(*INCIDENT_DECEL)
    stall = rng.random() < 0.5
    out.fraction[i] = 0.0 if stall else rng.uniform(*SLOWDOWN_FRACTION)
    out.steps[i] = num_steps if stall else int(round(rng.uniform(*SLOWDOWN_SECONDS) / DT))
  return out


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
  v0f = np.where(veh, rng.uniform(0.85, MAX_SPEED_FACTOR, n), 1.0)
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
  """Steps all agents jointly. Build with initial states, then call :meth:`run`.

  Entries ``E = A + LC_SLOTS``: one per agent plus secondary (old-lane) presences of
  lane-changing agents. Only the live (active) entries interact; their pairwise route
  relations are gathered once whenever the live set or a route changes, so a step is a
  fixed handful of numpy operations on ``(L, L)`` arrays (L = live entries, ~20-60).
  """

  def __init__(self, rng: np.random.Generator, road: RoadMap, table: RouteTable,
               agents: Agents, route: np.ndarray, s: np.ndarray, v: np.ndarray,
               active: np.ndarray, spawn_step: np.ndarray,
               light_state: dict[int, np.ndarray],
               incidents: Incidents | None = None):
    """Args:
      rng: random generator (lane-change decisions).
      road, table: the map and its route table.
      agents: static attributes ``(A,)``.
      route, s, v: initial route index, arc position (m) and speed (m/s) ``(A,)``.
      active: agents present at step 0 ``(A,)``.
      spawn_step: step at which an inactive agent wants to enter (-1: never) ``(A,)``.
      light_state: lane id -> per-step signal state ``(steps,)`` (Waymax values).
      incidents: scheduled hard braking of chosen vehicles (None: none).
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
    # Absent agents keep their arrival speed: they drive in from beyond the map.
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
    self.incidents = incidents if incidents is not None else Incidents.none(a)
    self._incident_target = np.full(a, np.nan)  # m/s, set when an incident starts
    self._any_incident = bool((self.incidents.start >= 0).any())
    self._build_stops()
    self._crit_e = np.concatenate([agents.crit_gap, np.zeros(LC_SLOTS)])
    self._sq = 2 * np.sqrt(agents.amax * agents.bcomf)
    self._vmax_last = table.vmax.shape[1] - 1
    self._vmax_flat = table.vmax.ravel()
    self._zone_has = ~np.isnan(table.zone[..., 0])  # (R, R, K)
    self._entry_lane = table.lane_ids[route, 0]
    self._lc_active = False
    self._set_pending()
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
    # Per route and stop: row of the light table (-1: not signal controlled).
    self.stop_light = np.full((r, k), -1)
    if len(self.light_lanes):
      self.light_table = np.stack([self.lights[ln] for ln in self.light_lanes])
      idx = np.clip(np.searchsorted(self.light_lanes, self.stop_lane), 0,
                    len(self.light_lanes) - 1)
      self.stop_light = np.where(self.light_lanes[idx] == self.stop_lane, idx, -1)
    self._any_sign = bool(self.stop_sign.any())

  # ---------------------------------------------------------------------------------
  def _rebuild(self):
    """Gathers the live entries and their pairwise route relations ``(L, L)``.

    Called only when an agent enters, leaves or changes lanes (the route-pair tables
    are static); live entries keep their index order so ties break as by index.
    """
    tab, ag = self.tab, self.ag
    a = self.num_agents
    live = np.flatnonzero(self.active)
    n_p = int(np.searchsorted(live, a))
    p = live[:n_p]
    self._live, self._prim, self._n_prim = live, p, n_p
    r = self.route[live]
    own = self.owner[live]
    # Secondary rows add their interaction to the owner's primary row.
    self._sec_row = np.searchsorted(p, own[n_p:])
    other = own[:, None] != own[None, :]

    def sub(table):  # (R, R, ...) route-pair table -> (L, L, ...) live-pair table
      return table.take(r, 0).take(r, 1)

    delta = sub(tab.delta)
    shared = ~np.isnan(delta) & other
    h = self.half[live]
    # Only entries on routes that share lanes can follow one another: keep those pairs
    # (row-major, as a dense mask's nonzero would list them) so a step works on them
    # alone rather than on (L, L) arrays.
    pi, pj = np.nonzero(shared)
    self._pi, self._pj = pi, pj
    d = delta[pi, pj]
    end = tab.common_end[r[pi], r[pj]]
    join = tab.join[r[pi], r[pj]]
    # Pair tests rewritten on the row/column arcs alone (s_j + delta < end + h_j + 1
    # becomes s_j < end2, etc.) so a step does the fewest array operations.
    self._c_end = end
    self._c_end2 = end + h[pj] + 1.0 - d
    self._c_delta_hh = d - (h[pi] + h[pj])
    self._c_join = join
    self._c_join_h = join - h[pi]
    self._c_join_t = tab.join[r[pj], r[pi]]
    self._c_yield = tab.priority[r[pi], r[pj]] == 1
    self._c_yield_t = tab.priority[r[pj], r[pi]] == 1
    self._any_yield = bool(self._c_yield.any())
    crit = self._crit_e[live]
    self._c_crit, self._c_crit_t = crit[pi], crit[pj]
    # Equal ordering keys: the higher index is ahead (a tiny bias instead of a tie test).
    self._c_thr = np.where(pj > pi, -1e-9, 0.0) - d
    # Per-row driver parameters (a secondary entry drives like its owner).
    self._s0_row = ag.s0[own]
    self._t_row = ag.headway[own]
    self._sq_row = self._sq[own]
    # Stop lines ahead on the live agents' routes.
    rp = self.route[p]
    self._p_stop_s = self.stop_s[rp]
    self._p_any_stop = bool(np.isfinite(self._p_stop_s).any())
    self._p_light = self.stop_light[rp]
    self._p_sign = self.stop_sign[rp]
    # Flat index of each agent's route row in the advisory speed table.
    self._p_vmax_base = rp * self.tab.vmax.shape[1]
    self._p_ds = self.tab.ds[rp]
    self._p_len = self.tab.length[rp]
    # Pedestrians stop where their route ends (they reached where they were going);
    # vehicles drive on off the map.
    self._p_dest = np.where(ag.type[p] == PEDESTRIAN, self._p_len, np.inf)
    self._any_ped = bool(np.isfinite(self._p_dest).any())
    self._p_v0f = ag.v0f[p]
    self._p_amax = ag.amax[p]
    self._p_half = self.half[p]
    # Crossing zones between live entries of different agents.
    has = sub(self._zone_has) & other[..., None]
    pi, pj, k = np.nonzero(has)
    if len(pi):
      za = tab.zone[r[pi], r[pj], k]
      zb = tab.zone[r[pj], r[pi], k]
      self._zones = (pi, pj, za[:, 0], za[:, 1], zb[:, 0], zb[:, 1],
                     tab.zone_yield[r[pi], r[pj], k], h[pi], h[pj], crit[pi], pj < pi)
    else:
      self._zones = None
    self._dirty = False

  def _obstacles(self, step: int, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Gap (m) to the nearest stop-line obstacle per live agent ``(P,)`` (inf if none).

    Args:
      s, v: arc (m) and speed (m/s) of the live agents ``(P,)``.
    """
    if not self._p_any_stop:
      return np.full(len(s), np.inf)
    p = self._prim
    front = s + self._p_half
    stop_s = self._p_stop_s
    ahead = stop_s > front[:, None] - 0.3
    gap = stop_s - 0.5 - front[:, None]
    block = np.zeros_like(ahead)
    if len(self.light_lanes):
      li = self._p_light
      has = li >= 0
      state = np.where(has, self.light_table[li, min(step, self.light_table.shape[1] - 1)],
                       0)
      red = (state == 4) | (state == 1) | (state == 7)
      # On yellow, stop if it can be done at a comfortable 3.5 m/s^2.
      yellow = (state == 5) | (state == 2)
      can_stop = gap > v[:, None] ** 2 / (2 * 3.5)
      block |= has & (red | (yellow & can_stop))
    if self._any_sign:
      sign = self._p_sign & (stop_s > self.stop_served[p, None] + 1e-3)
      block |= sign
      # Serve a stop sign: stopped close to the line.
      served = sign & ahead & (v[:, None] < 0.3) & (gap < self.ag.s0[p, None] + 3.0)
      if served.any():
        rows, cols = np.nonzero(served)
        self.stop_served[p[rows]] = np.maximum(self.stop_served[p[rows]],
                                               stop_s[rows, cols])
        block &= ~served
    gap = np.where(ahead & block, gap, np.inf)
    return gap.min(axis=1)

  def _leaders(self, s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pairwise following among live entries, as a sparse list of (follower, leader).

    Returns:
      rows, cols, gap: follower and leader entry ``(K,)`` and their bumper gap (m);
      stop_gap ``(L,)``: distance to stop before a join where a leader with right of
      way will come from the other branch (inf if none).
    """
    pi, pj = self._pi, self._pj
    si, sj = s[pi], s[pj]
    # j leads i when ahead of it in the shared arc coordinate (s_j + delta > s_i).
    key = sj - si
    if self._any_yield:
      # Gap acceptance at a join, as a distance: a yielding agent places itself this
      # much farther from the join when ordering against an agent with right of way.
      key += np.where(self._c_yield & (si < self._c_join),
                      self._c_crit * np.maximum(v[pj], 5.0), 0.0)
      key -= np.where(self._c_yield_t & (sj < self._c_join_t),
                      self._c_crit_t * np.maximum(v[pi], 5.0), 0.0)
    lead = np.flatnonzero((si < self._c_end) & (sj < self._c_end2) & (key > self._c_thr))
    rows, cols = pi[lead], pj[lead]
    gap = s[cols] - s[rows] + self._c_delta_hh[lead]
    # A leader that is not physically ahead yet (it comes from the other branch of a
    # join and has the right of way): wait before the join.
    join_h = self._c_join_h[lead]
    wait = (gap <= 0.0) & (s[rows] < join_h)
    stop_gap = np.full(len(s), np.inf)
    if wait.any():
      np.minimum.at(stop_gap, rows[wait], join_h[wait] - 1.0 - s[rows[wait]])
      go = ~wait
      rows, cols, gap = rows[go], cols[go], gap[go]
    return rows, cols, gap, stop_gap

  def _zone_gaps(self, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Gap (m) to the entry of a crossing zone a live entry must not enter ``(L,)``."""
    out = np.full(len(s), np.inf)
    if self._zones is None:
      return out
    pi, pj, za0, za1, zb0, zb1, y, hi, hj, crit, j_first = self._zones
    si, sj, vi, vj = s[pi], s[pj], v[pi], v[pj]
    dist_i = za0 - si - hi
    dist_j = zb0 - sj - hj
    inside_i = (dist_i < 0.5) & (si - hi < za1 + 0.5)
    inside_j = (dist_j < 1.0) & (sj - hj < zb1 + 1.0)
    passed_j = sj - hj > zb1 + 0.5
    # Committed: cannot stop before the zone at 4 m/s^2.
    commit_j = inside_j | (dist_j < vj**2 / 8.0 + 0.5)
    commit_i = dist_i < vi**2 / 8.0 + 0.5
    eta_i = dist_i / np.maximum(vi, 1.0)
    eta_j = dist_j / np.maximum(vj, 1.0)
    occ_j = (zb1 - zb0 + 2 * hj) / np.maximum(vj, 1.5)
    occ_i = (za1 - za0 + 2 * hi) / np.maximum(vi, 1.5)
    # Time windows overlap (with a margin): only then is there anything to resolve.
    clash = (eta_j < eta_i + occ_i + 1.5) & (eta_i < eta_j + occ_j + 1.5)
    first_j = (eta_j < eta_i) | ((eta_j == eta_i) & j_first)
    yield_ = np.where(y > 0, eta_j < crit + occ_i,
                      np.where(y < 0, commit_j & clash, clash & first_j))
    must_wait = ~inside_i & ~passed_j & (inside_j | (commit_j & ~commit_i & clash)
                                         | (yield_ & ~commit_i))
    gap = np.where(must_wait, dist_i - 1.0, np.inf)
    np.minimum.at(out, pi, gap)
    return out

  # ---------------------------------------------------------------------------------
  def step(self, step: int):
    """Advances every agent by one 0.1 s step (IDM, bounded jerk)."""
    self._spawn(step)
    if self._dirty:
      self._rebuild()
    live, p, n_p = self._live, self._prim, self._n_prim
    if len(live) == 0:
      return
    s_l, v_l = self.s[live], self.v[live]
    s, v = s_l[:n_p], v_l[:n_p]
    rows, cols, gap, stop_gap = self._leaders(s_l, v_l)
    zone_gap = self._zone_gaps(s_l, v_l)
    # Stationary obstacles per entry: stop lines, waiting before a join or a crossing
    # zone. A lane-changing agent's secondary (old-lane) entry brings its old lane's
    # leaders and crossings.
    obst = zone_gap.copy()
    obst[:n_p] = np.minimum(np.minimum(stop_gap[:n_p], obst[:n_p]),
                            self._obstacles(step, s, v))
    if self._any_ped:
      obst[:n_p] = np.minimum(obst[:n_p], self._p_dest - s - self._p_half)
    # IDM interaction term (s*/gap)^2, the largest over leaders and the obstacle.
    vr = v_l[rows]
    star = self._s0_row[rows] + np.maximum(
        0.0, vr * self._t_row[rows] + vr * (vr - v_l[cols]) / self._sq_row[rows])
    ratio = np.zeros(len(live))
    np.maximum.at(ratio, rows, star / np.maximum(gap, 0.05))
    star0 = self._s0_row + np.maximum(0.0, v_l * self._t_row + v_l * v_l / self._sq_row)
    ratio = np.maximum(ratio, star0 / np.maximum(obst, 0.05))
    inter = ratio[:n_p] ** 2
    if n_p < len(live):
      np.maximum.at(inter, self._sec_row, ratio[n_p:] ** 2)
    vmax = self._vmax_flat[self._p_vmax_base + np.minimum(
        (s / self._p_ds).astype(np.int64), self._vmax_last)]
    v0 = np.maximum(vmax * self._p_v0f, 0.0)
    free = np.where(v0 < 0.05, -v / 0.2, 1.0 - (v / np.maximum(v0, 0.2)) ** 4)
    amax = self._p_amax
    acc = np.clip(amax * (free - inter), A_MIN, np.minimum(A_MAX, amax))
    if self._any_incident:
      acc = np.minimum(acc, self._incident_acc(step, p, v))
    prev = self.acc[p]
    acc = np.clip(acc, np.maximum(prev - JERK_DOWN, A_MIN), np.minimum(prev + JERK_UP, A_MAX))
    v_new = np.maximum(v + acc * DT, 0.0)
    self.acc[p] = (v_new - v) / DT
    ds = (v + v_new) * (DT / 2)
    s_new = s + ds
    self.s[p] = s_new
    self.v[p] = v_new
    if n_p < len(live):
      own = self._sec_row
      sec = live[n_p:]
      self.s[sec] += ds[own]
      self.v[sec] = v_new[own]
    # Leave the map at the end of the route.
    done = s_new > self._p_len
    if done.any():
      for i in p[done]:
        self.active[i] = False
        self.finished[i] = True
        self.v[i] = 0.0
        self.acc[i] = 0.0
        self._end_lane_change(i)
      self._dirty = True
    if self._lc_active:
      self._update_lane_changes()
    if step % 10 == 5:
      self._maybe_change_lanes()

  def _incident_acc(self, step: int, p: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Upper bound on the acceleration of live agents ``p`` from their incidents
    (+inf where none is under way): brake at the incident's rate to its target speed."""
    inc = self.incidents
    start = inc.start[p]
    on = (start >= 0) & (step >= start) & (step < start + inc.steps[p])
    # The target speed is fixed at the first step the incident is under way.
    begins = on & np.isnan(self._incident_target[p])
    self._incident_target[p[begins]] = inc.fraction[p[begins]] * v[begins]
    target = self._incident_target[p]
    bound = np.maximum((np.where(on, target, 0.0) - v) / DT, -inc.decel[p])
    return np.where(on, bound, np.inf)

  def _spawn(self, step: int):
    if self._next_spawn > step:
      return
    pend = self._pending
    want = pend[self.spawn_step[pend] <= step]
    # First come, first served at each entry: only the earliest due arrival per entry
    # lane may enter (agents are indexed in arrival order per entry).
    _, first = np.unique(self._entry_lane[want], return_index=True)
    want = want[np.sort(first)]
    # Enter only if the route's start is clear of everyone sharing it.
    live = np.flatnonzero(self.active)
    d = self.tab.delta[self.route[want][:, None], self.route[live][None, :]]
    ok = ~np.isnan(d)
    half = self.half[live]
    pos = self.s[live] + np.where(ok, d, 0.0)
    sw, hw, vw = self.s[want], self.half[want], self.v[want]
    ag = self.ag
    # Room to follow at the arrival speed, and to brake comfortably to a slower leader.
    closing = np.maximum(vw[:, None] - self.v[live][None, :], 0.0)
    clear_ahead = ((ag.s0[want] + 2.0 + vw * ag.headway[want])[:, None]
                   + closing**2 / (2 * ag.bcomf[want])[:, None])
    near = ok & (pos - half < (sw + hw)[:, None] + clear_ahead) & (
        pos + half > (sw - hw - 8.0)[:, None])
    free = np.flatnonzero(~near.any(axis=1))
    if len(free):
      # One arrival per step: two arrivals on routes sharing an entry would otherwise
      # appear on top of each other (neither sees the other before it is active).
      i = want[free[0]]
      self.active[i] = True
      self.spawn_step[i] = -1
      self._set_pending()
      self._dirty = True
    else:
      # Entries stay blocked for a while (a queue at the map's edge): look again later.
      self._next_spawn = step + 3

  def _set_pending(self):
    """Agents still waiting to enter, and the earliest step one of them may."""
    self._pending = np.flatnonzero(self.spawn_step >= 0)
    self._next_spawn = (int(self.spawn_step[self._pending].min()) if len(self._pending)
                        else np.inf)

  # ---------------------------------------------------------------------------------
  def _update_lane_changes(self):
    on = self.lc_t >= 0
    self.lc_t[on] += DT
    for i in np.nonzero(on & (self.lc_t >= self.lc_dur))[0]:
      self._end_lane_change(i)

  def _end_lane_change(self, i: int):
    if self.lc_slot[i] >= 0:
      slot = self.num_agents + self.lc_slot[i]
      self.owner[slot] = -1
      self.active[slot] = False
      self.lc_slot[i] = -1
      self._dirty = True
    self.lc_t[i] = -1.0
    self.lc_d0[i] = 0.0
    self._lc_active = bool((self.lc_t >= 0).any())

  def lateral(self) -> tuple[np.ndarray, np.ndarray]:
    """Current lateral offset (m) and its rate (m/s) per agent ``(A,)``."""
    if not self._lc_active:
      return np.zeros(self.num_agents), np.zeros(self.num_agents)
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
      # Parallel lanes differ in length on curves: move to the point of the new route
      # abreast of the agent (no jump along the road; the offset is purely lateral).
      old_xy = tab.lookup(np.array([r]), np.array([self.s[i]]))[0][0]
      for _ in range(3):
        new_xy, new_yaw = tab.lookup(np.array([nr]), np.array([ns]))
        ns += float((old_xy[0] - new_xy[0, 0]) * np.cos(new_yaw[0])
                    + (old_xy[1] - new_xy[0, 1]) * np.sin(new_yaw[0]))
      if not self._gap_ok(i, nr, ns):
        continue
      new_xy, new_yaw = tab.lookup(np.array([nr]), np.array([ns]))
      d0 = float(-(old_xy[0] - new_xy[0, 0]) * np.sin(new_yaw[0])
                 + (old_xy[1] - new_xy[0, 1]) * np.cos(new_yaw[0]))
      slot = free_slots.pop()
      e = a + slot
      self.owner[e] = i
      self.route[e], self.s[e], self.v[e] = r, self.s[i], self.v[i]
      self.half[e] = self.half[i]
      self.active[e] = True
      self.lc_slot[i] = slot
      self.route[i], self.s[i] = nr, ns
      self.lc_t[i], self.lc_dur[i], self.lc_d0[i] = 0.0, dur, d0
      self._lc_active = True
      self._dirty = True

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
    self._dirty = True
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
