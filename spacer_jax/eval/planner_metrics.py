"""PDM-style scores of an ego planner's closed-loop episode, collision fault, rank tests.

The aggregate follows the PDM score of nuPlan / NAVSIM (the spec: "PDM-style:
collision, time to collision, off-road, comfort, progress, and an aggregate"):

  score = NC * DAC * DDC * MP * (5 TTC + 5 EP + 2 C) / 12

* **NC**, no at-fault collision (multiplier): 0 if the ego is at fault in any collision
  of the episode, else 1. (nuPlan's 0.5 for hitting static objects has no counterpart:
  every object here is a vehicle, pedestrian or cyclist.)
* **DAC**, drivable-area compliance (multiplier): 0 if any corner of the ego's box is
  more than ``drivable_tolerance`` (0.3 m, nuPlan's) past a road edge at any simulated
  step, else 1.
* **DDC**, driving-direction compliance (multiplier, nuPlan's): 1, 0.5 or 0 by the most
  metres driven against traffic within any 1 s (:mod:`spacer_jax.eval.pdm_terms`).
* **MP**, making progress (multiplier, nuPlan's): 0 if EP < ``min_progress_ratio``
  (0.2), else 1.
* **TTC** within bound (weight 5): 1 if the ego's time to collision with any object in
  its path (nuPlan's constant-velocity projection over 3 s,
  :func:`spacer_jax.eval.pdm_terms.ego_time_to_collision`) never drops below 0.95 s
  (nuPlan's bound), else 0.
* **EP**, ego progress (weight 5): progress along the route (the SDC's logged path)
  divided by a reference progress, clipped to [0, 1]; 1 when the reference is under 5 m
  (NAVSIM's rule, so standing still where the expert also waits scores fully). The
  reference is the log's own progress here; :mod:`planner_study` can use the best
  compliant planner instead (NAVSIM uses PDM-Closed's progress).
* nuPlan's speed-limit term (weight 4) has no counterpart: the roadgraph (Waymax's
  ``RoadgraphPoints``) carries no speed limits.
* **C**, comfort (weight 2): 1 if the ego's longitudinal acceleration stays in
  [-4.05, 2.40] m/s^2, |lateral acceleration| <= 4.89 m/s^2, |yaw rate| <= 0.95 rad/s,
  |yaw acceleration| <= 1.93 rad/s^2, |longitudinal jerk| <= 4.13 m/s^3 and |jerk| <=
  8.37 m/s^3 (nuPlan's comfort bounds); derivatives are finite differences at 10 Hz of
  a moving average (``comfort_window`` steps, 0.5 s) taken before each derivative
  (nuPlan smooths with a Savitzky-Golay filter).

**Collision fault** (:func:`first_contacts`), for each pair at its first contact step:

1. The contact normal is the separating axis (either box's heading or lateral axis)
   whose projections began to overlap last between the step before contact and the
   contact step (the face that was hit), oriented from one party to the other; without
   a step before (overlapping at the start) the axis of least penetration.
2. Each party's *approach* is its own velocity (displacement over the step) along the
   normal towards the other.
3. A party is at fault iff it is moving (speed >= ``stopped_speed``, 0.05 m/s as nuPlan) and its
   approach exceeds ``min_approach`` (0.25 m/s). So a stopped party is never at fault;
   rear-end: the rear car (the front car's approach is minus its speed); T-bone: the
   car whose front hits the other's side (the struck car moves across the normal);
   parked car hit: the mover; head-on: both; side-swipe: the one drifting sideways.

4. **Cut-in** (:func:`first_contacts`): a party that, within ``cut_in_steps`` (2 s)
   before the contact, moved sideways by ``cut_in_lateral`` (1 m) or more from outside
   the other's path into it, ahead of the other, is at fault and the party it cut off
   is not, whatever 1-3 said (the follower's front hit the cutter's rear).

A **false-positive** collision of the ego: the ego is in a collision in which it is not
at fault but the other party is (the sim agent drove into the ego, or cut in ahead of
it).

Rank correlations (:func:`spearman`, :func:`kendall_tau`) are host-side numpy.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from spacer_jax.eval import pdm_terms
from spacer_jax.eval.planners import sdc_index, sdc_route, take_object
from spacer_jax.sim import geometry
from spacer_jax.sim.agents.idm import project_onto_path
from spacer_jax.sim.datatypes import TIMESTEP_SECONDS, SimulatorState, Trajectory
from spacer_jax.sim.metrics import road_edges


@dataclasses.dataclass(frozen=True)
class PDMConfig:
  """Thresholds and weights of the planner score (module doc).

  Attributes:
    w_ttc, w_progress, w_comfort: weights of the weighted average (nuPlan/NAVSIM: 5/5/2).
    ttc_threshold: seconds; TTC below it fails the TTC term (nuPlan: 0.95 s).
    ttc_horizon, ttc_time_step: seconds of the constant-velocity projection and between
      its poses (nuPlan: 3 s, 0.1 s).
    drivable_tolerance: metres a box corner may be past a road edge (nuPlan: 0.3 m).
    lane_radius: metres; lane centres nearer the ego's centre set the driving direction.
    direction_window: steps of the driving-direction window (10 = nuPlan's 1 s).
    direction_compliance, direction_violation: metres against traffic within a window
      that still give 1 / 0.5 (nuPlan: 2 m, 6 m).
    min_progress_ratio: EP below it fails the making-progress multiplier (nuPlan: 0.2).
    progress_threshold: metres; a reference progress below it gives EP = 1 (NAVSIM: 5 m).
    min_lon_accel, max_lon_accel: m/s^2. max_abs_lat_accel: m/s^2.
    max_abs_yaw_rate: rad/s. max_abs_yaw_accel: rad/s^2.
    max_abs_lon_jerk, max_abs_jerk: m/s^3 (nuPlan's comfort bounds).
    comfort_window: moving-average length in steps before each derivative.
    stopped_speed: m/s; a party slower than this is stopped (never at fault).
    min_approach: m/s; a party approaching the other slower than this is not at fault.
    cut_in_steps: steps before a contact within which a party that moved sideways into
      the other's path ahead of it counts as cutting in (20 = 2 s; 0 = no cut-in rule).
    cut_in_lateral: metres; the sideways move (in the other's frame at contact) that
      makes a cut-in.
    dt: seconds per simulator step.
  """

  w_ttc: float = 5.0
  w_progress: float = 5.0
  w_comfort: float = 2.0
  ttc_threshold: float = 0.95
  ttc_horizon: float = 3.0
  ttc_time_step: float = 0.1
  drivable_tolerance: float = 0.3
  lane_radius: float = 2.0
  direction_window: int = 10
  direction_compliance: float = 2.0
  direction_violation: float = 6.0
  min_progress_ratio: float = 0.2
  progress_threshold: float = 5.0
  min_lon_accel: float = -4.05
  max_lon_accel: float = 2.40
  max_abs_lat_accel: float = 4.89
  max_abs_yaw_rate: float = 0.95
  max_abs_yaw_accel: float = 1.93
  max_abs_lon_jerk: float = 4.13
  max_abs_jerk: float = 8.37
  comfort_window: int = 5
  stopped_speed: float = 0.05  # nuPlan's stopped-ego threshold.
  min_approach: float = 0.25
  cut_in_steps: int = 20
  cut_in_lateral: float = 1.0
  dt: float = TIMESTEP_SECONDS

  def __post_init__(self):
    for name in ('ttc_threshold', 'max_lon_accel', 'max_abs_lat_accel', 'max_abs_yaw_rate',
                 'max_abs_yaw_accel', 'max_abs_lon_jerk', 'max_abs_jerk', 'comfort_window',
                 'dt', 'ttc_horizon', 'ttc_time_step', 'lane_radius', 'direction_window'):
      if getattr(self, name) <= 0:
        raise ValueError(f'PDMConfig.{name} must be positive, got {getattr(self, name)}.')
    for name in ('w_ttc', 'w_progress', 'w_comfort', 'progress_threshold', 'stopped_speed',
                 'min_approach', 'cut_in_steps', 'cut_in_lateral', 'drivable_tolerance',
                 'direction_compliance', 'min_progress_ratio'):
      if getattr(self, name) < 0:
        raise ValueError(f'PDMConfig.{name} must be >= 0, got {getattr(self, name)}.')
    if self.w_ttc + self.w_progress + self.w_comfort <= 0:
      raise ValueError('PDMConfig: the weights must not all be zero.')
    if self.direction_violation < self.direction_compliance:
      raise ValueError(f'PDMConfig.direction_violation ({self.direction_violation}) must be '
                       f'>= direction_compliance ({self.direction_compliance}).')
    if self.min_lon_accel >= 0:
      raise ValueError(f'PDMConfig.min_lon_accel must be negative, got {self.min_lon_accel}.')


# -- collisions and fault ------------------------------------------------------------------


# Separating-axis overlaps of two boxes (moved to the simulator's geometry).
pair_margins = geometry.box_pair_margins


def contact_fault(pre, post, pre_valid, config: PDMConfig = PDMConfig()
                  ) -> tuple[jax.Array, jax.Array]:
  """Who is at fault in a contact, by the rule of the module doc.

  Args:
    pre, post: tuples ``(xi, yi, li, wi, hi, xj, yj, lj, wj, hj)`` of the two boxes at
      the step before contact and at the contact step (broadcastable arrays).
    pre_valid: bool, both parties exist at the step before (else the velocities are
      unknown: both count as stopped, and the normal is the least-penetration axis).
    config: thresholds and ``dt``.

  Returns:
    ``(i_at_fault, j_at_fault)``, bool arrays.
  """
  m_post = pair_margins(*post)
  m_pre = pair_margins(*pre)
  crossed = (m_pre <= 0) & (m_post > 0)
  frac = jnp.where(crossed, m_pre / jnp.minimum(m_pre - m_post, -1e-9), -1.0)
  axis_by_crossing = jnp.argmax(frac, axis=-1)
  axis = jnp.where(pre_valid & jnp.any(crossed, -1), axis_by_crossing,
                   jnp.argmin(m_post, axis=-1))
  xi, yi, _, _, hi, xj, yj, _, _, hj = post
  heading = jnp.where(axis < 2, hi, hj) + jnp.where(axis % 2 == 1, jnp.pi / 2, 0.0)
  normal = jnp.stack([jnp.cos(heading), jnp.sin(heading)], -1)
  centre_gap = jnp.stack([xj - xi, yj - yi], -1)
  normal = jnp.where((jnp.sum(centre_gap * normal, -1) < 0)[..., None], -normal, normal)
  vel_i = jnp.stack([xi - pre[0], yi - pre[1]], -1) / config.dt
  vel_j = jnp.stack([xj - pre[5], yj - pre[6]], -1) / config.dt
  approach_i = jnp.sum(vel_i * normal, -1)
  approach_j = -jnp.sum(vel_j * normal, -1)
  moving_i = pre_valid & (jnp.linalg.norm(vel_i, axis=-1) >= config.stopped_speed)
  moving_j = pre_valid & (jnp.linalg.norm(vel_j, axis=-1) >= config.stopped_speed)
  return (moving_i & (approach_i > config.min_approach),
          moving_j & (approach_j > config.min_approach))


def _cut_in(victim, mover, mover_before, config: PDMConfig) -> jax.Array:
  """Whether ``mover`` cut in ahead of ``victim``: at contact it is ahead of the victim
  (in the victim's frame), and since ``cut_in_steps`` earlier it moved sideways by at
  least ``cut_in_lateral`` into the victim's path from outside it (the victim's own
  steering does not count: both lateral positions are in the victim's frame at contact).

  Args are ``(x, y, length, width, yaw)`` tuples of broadcastable arrays.
  """
  vx, vy, _, vw, vyaw = victim
  c, s = jnp.cos(vyaw), jnp.sin(vyaw)
  ahead = c * (mover[0] - vx) + s * (mover[1] - vy) > 0
  lateral = lambda x, y: -s * (x - vx) + c * (y - vy)
  now, then = lateral(mover[0], mover[1]), lateral(mover_before[0], mover_before[1])
  path = 0.5 * (vw + mover[3])
  return (ahead & (jnp.abs(then) >= path) & (jnp.abs(now) < jnp.abs(then))
          & (jnp.abs(then - now) >= config.cut_in_lateral))


@struct.dataclass
class Contacts:
  """The first contact between row objects and every object, fields ``(..., R, N)``.

  Attributes:
    collided: the pair's boxes overlap at some step of the window (both valid).
    step: timestep of the first overlap (-1 without one).
    row_at_fault: the row object is at fault in that first contact.
    other_at_fault: the other object is.
  """

  collided: jax.Array
  step: jax.Array
  row_at_fault: jax.Array
  other_at_fault: jax.Array


def first_contacts(trajectory: Trajectory, rows: jax.Array, start_step: int,
                   end_step: int | None = None, config: PDMConfig = PDMConfig()
                   ) -> Contacts:
  """First overlap of each row object with every other object, and who is at fault.

  Args:
    trajectory: ``(..., N, T)`` simulated boxes.
    rows: ``(..., R)`` int, the objects whose contacts are wanted (e.g. the SDC).
    start_step: first timestep checked (contacts already present count at it).
    end_step: last timestep checked (inclusive; default the last).
    config: fault thresholds.

  Returns:
    :class:`Contacts` ``(..., R, N)``; a row's own column is never a contact.
  """
  num_t = trajectory.num_timesteps
  end = num_t - 1 if end_step is None else end_step
  if not 0 <= start_step <= end < num_t:
    raise ValueError(f'first_contacts: need 0 <= start_step ({start_step}) <= end_step '
                     f'({end}) < {num_t} timesteps.')
  fields = ('x', 'y', 'length', 'width', 'yaw')
  window = lambda a: a[..., start_step:end + 1]
  obj = [window(getattr(trajectory, f)) for f in fields]  # (..., N, W)
  row = [jnp.take_along_axis(a, rows[..., None], axis=-2) for a in obj]  # (..., R, W)
  valid = window(trajectory.valid)
  row_valid = jnp.take_along_axis(valid, rows[..., None], axis=-2)
  row_args = [a[..., :, None, :] for a in row]  # (..., R, 1, W)
  obj_args = [a[..., None, :, :] for a in obj]  # (..., 1, N, W)
  margins = pair_margins(*row_args, *obj_args)  # (..., R, N, W, 4)
  n = valid.shape[-2]
  not_self = rows[..., :, None] != jnp.arange(n)
  both = row_valid[..., :, None, :] & valid[..., None, :, :] & not_self[..., None]
  hit = both & (jnp.min(margins, -1) > 0)  # (..., R, N, W)
  collided = jnp.any(hit, -1)
  first = jnp.argmax(hit, -1)  # (..., R, N) window index
  at = lambda a, k: jnp.take_along_axis(a, k[..., None], axis=-1)[..., 0]
  before = jnp.maximum(first - 1, 0)
  post = tuple(at(jnp.broadcast_to(a, hit.shape), first) for a in row_args + obj_args)
  pre = tuple(at(jnp.broadcast_to(a, hit.shape), before) for a in row_args + obj_args)
  pre_valid = (first > 0) & at(both, before)
  row_fault, other_fault = contact_fault(pre, post, pre_valid, config)
  if config.cut_in_steps:
    back = jnp.maximum(first - config.cut_in_steps, 0)
    earlier = tuple(at(jnp.broadcast_to(a, hit.shape), back) for a in row_args + obj_args)
    known = (first > back) & at(both, back)
    other_cut_in = known & _cut_in(post[:5], post[5:], earlier[5:], config)
    row_cut_in = known & _cut_in(post[5:], post[:5], earlier[:5], config)
    # A party that cut in ahead of the other is at fault, the one it cut off is not.
    row_fault = (row_fault & ~other_cut_in) | row_cut_in
    other_fault = (other_fault & ~row_cut_in) | other_cut_in
  step = jnp.where(collided, first + start_step, -1)
  return Contacts(collided=collided, step=step, row_at_fault=collided & row_fault,
                  other_at_fault=collided & other_fault)


# -- comfort, TTC, progress, off-road -----------------------------------------------------------


def _moving_average(a: jax.Array, window: int) -> jax.Array:
  """'valid' moving average along the last axis (length shrinks by ``window - 1``)."""
  return pdm_terms.window_sums(a, window) / window


def comfort_extremes(x: jax.Array, y: jax.Array, yaw: jax.Array,
                     config: PDMConfig = PDMConfig()) -> dict[str, jax.Array]:
  """Extremes of the ego's comfort quantities over a trajectory ``(..., T)``.

  Velocity, acceleration and jerk vectors are first differences of moving averages
  (``comfort_window`` steps); longitudinal / lateral components use the heading at the
  same (smoothed) step. Returns ``(...)`` arrays: ``min_lon_accel``, ``max_lon_accel``
  (m/s^2), ``max_abs_lat_accel``, ``max_abs_yaw_rate`` (rad/s), ``max_abs_yaw_accel``,
  ``max_abs_lon_jerk`` (m/s^3), ``max_abs_jerk``.
  """
  w, dt = config.comfort_window, config.dt
  need = 3 * w + 1
  if x.shape[-1] < need:
    raise ValueError(f'comfort_extremes needs at least {need} steps (3 moving averages of '
                     f'{config.comfort_window} and 3 differences), got {x.shape[-1]}.')
  smooth_diff = lambda a: jnp.diff(_moving_average(a, w), axis=-1) / dt
  vel = jnp.stack([smooth_diff(x), smooth_diff(y)], -1)  # (..., T - w, 2)
  acc = jnp.stack([smooth_diff(vel[..., 0]), smooth_diff(vel[..., 1])], -1)
  jerk = jnp.stack([smooth_diff(acc[..., 0]), smooth_diff(acc[..., 1])], -1)
  unwrapped = jnp.unwrap(yaw, axis=-1)
  yaw_rate = smooth_diff(unwrapped)
  yaw_accel = smooth_diff(yaw_rate)
  # Headings centred on the same steps as the derivative series: an acceleration
  # sample sits w steps after its window's start, a jerk sample 1.5 w.
  h_acc = _moving_average(unwrapped, 2 * w + 1)
  u_acc = jnp.stack([jnp.cos(h_acc), jnp.sin(h_acc)], -1)
  lon = jnp.sum(acc * u_acc, -1)
  lat = geometry.cross2(u_acc, acc)
  h_jerk = _moving_average(unwrapped, 3 * w + 1)
  lon_jerk = jnp.sum(jerk * jnp.stack([jnp.cos(h_jerk), jnp.sin(h_jerk)], -1), -1)
  return {
      'min_lon_accel': jnp.min(lon, -1), 'max_lon_accel': jnp.max(lon, -1),
      'max_abs_lat_accel': jnp.max(jnp.abs(lat), -1),
      'max_abs_yaw_rate': jnp.max(jnp.abs(yaw_rate), -1),
      'max_abs_yaw_accel': jnp.max(jnp.abs(yaw_accel), -1),
      'max_abs_lon_jerk': jnp.max(jnp.abs(lon_jerk), -1),
      'max_abs_jerk': jnp.max(jnp.linalg.norm(jerk, axis=-1), -1),
  }


def is_comfortable(extremes: dict[str, jax.Array], config: PDMConfig = PDMConfig()
                   ) -> jax.Array:
  """All of nuPlan's comfort bounds hold, bool ``(...)``."""
  c = config
  return ((extremes['min_lon_accel'] >= c.min_lon_accel)
          & (extremes['max_lon_accel'] <= c.max_lon_accel)
          & (extremes['max_abs_lat_accel'] <= c.max_abs_lat_accel)
          & (extremes['max_abs_yaw_rate'] <= c.max_abs_yaw_rate)
          & (extremes['max_abs_yaw_accel'] <= c.max_abs_yaw_accel)
          & (extremes['max_abs_lon_jerk'] <= c.max_abs_lon_jerk)
          & (extremes['max_abs_jerk'] <= c.max_abs_jerk))


def ego_offroad_flags(state: SimulatorState, start_step: int, end_step: int,
                      tolerance: float = 0.0) -> jax.Array:
  """Whether any corner of the SDC's simulated box is more than ``tolerance`` metres
  past a road edge, per step ``start_step .. end_step``: bool ``(..., W)`` (False where
  the SDC is invalid or the map has no road edges). Uses ``state.road_edge_index`` when
  present."""
  traj = jax.tree_util.tree_map(lambda a: take_object(a, sdc_index(state), -2)[
      ..., 0, start_step:end_step + 1], state.sim_trajectory)
  corners = geometry.box_corners(traj.x, traj.y, traj.length, traj.width, traj.yaw)
  z = jnp.broadcast_to(traj.z[..., None, None], corners.shape[:-1] + (1,))
  query = jnp.concatenate([corners, z], -1)
  w = query.shape[-3]
  flat = query.reshape(query.shape[:-3] + (w * 4, 3))
  d = road_edges.signed_distance_to_road_edge(flat, state.roadgraph_points,
                                              state.road_edge_index)
  off = (d.distance > tolerance) & d.valid
  return jnp.any(off.reshape(off.shape[:-1] + (w, 4)), -1) & traj.valid


def progress_ratio(progress: jax.Array, reference: jax.Array,
                   config: PDMConfig = PDMConfig()) -> jax.Array:
  """EP: ``clip(progress / reference, 0, 1)``, 1 where ``reference`` < the threshold."""
  ratio = jnp.clip(progress / jnp.maximum(reference, 1e-6), 0.0, 1.0)
  return jnp.where(reference < config.progress_threshold, 1.0, ratio)


def making_progress(ego_progress: jax.Array, config: PDMConfig = PDMConfig()) -> jax.Array:
  """MP: 1.0 where EP >= ``min_progress_ratio``, else 0.0."""
  return (ego_progress >= config.min_progress_ratio).astype(jnp.float32)


def pdm_score(no_at_fault_collision: jax.Array, drivable_area: jax.Array,
              ttc_within_bound: jax.Array, ego_progress: jax.Array, comfort: jax.Array,
              config: PDMConfig = PDMConfig(), driving_direction: jax.Array = 1.0,
              progressing: jax.Array = 1.0) -> jax.Array:
  """``NC * DAC * DDC * MP * (w_ttc TTC + w_ep EP + w_c C) / (w_ttc + w_ep + w_c)``,
  elementwise (``driving_direction`` DDC and ``progressing`` MP default to 1)."""
  c = config
  weighted = (c.w_ttc * ttc_within_bound + c.w_progress * ego_progress
              + c.w_comfort * comfort) / (c.w_ttc + c.w_progress + c.w_comfort)
  return no_at_fault_collision * drivable_area * driving_direction * progressing * weighted


# -- per-episode scores -------------------------------------------------------------------


@struct.dataclass
class EpisodeScores:
  """PDM-style scores of one ego episode per scenario; every field ``(...)``.

  Attributes:
    valid: the SDC exists at the start step.
    no_at_fault_collision, drivable_area_compliance, ttc_within_bound, comfort,
      making_progress: 0/1. driving_direction_compliance: 0, 0.5 or 1.
    ego_progress: EP in [0, 1]. score: the aggregate in [0, 1].
    against_traffic: the most metres driven against traffic within 1 s.
    progress: metres along the route. log_progress: the logged SDC's progress over the
      same steps. reference_progress: EP's denominator (m).
    min_ttc: seconds (``ttc_horizon`` = nothing in the ego's path would be hit).
    ego_collision: the ego overlapped any object. at_fault_collision: at fault in one.
    at_fault_count, false_positive_count: objects the ego collided with at fault, and
      with the other party (alone) at fault.
  """

  valid: jax.Array
  no_at_fault_collision: jax.Array
  drivable_area_compliance: jax.Array
  driving_direction_compliance: jax.Array
  making_progress: jax.Array
  ttc_within_bound: jax.Array
  comfort: jax.Array
  ego_progress: jax.Array
  score: jax.Array
  against_traffic: jax.Array
  progress: jax.Array
  log_progress: jax.Array
  reference_progress: jax.Array
  min_ttc: jax.Array
  ego_collision: jax.Array
  at_fault_collision: jax.Array
  at_fault_count: jax.Array
  false_positive_count: jax.Array

  def with_reference_progress(self, reference: jax.Array,
                              config: PDMConfig = PDMConfig()) -> EpisodeScores:
    """The scores with EP, MP and the aggregate against another reference progress."""
    ep = progress_ratio(self.progress, reference, config)
    mp = making_progress(ep, config)
    score = pdm_score(self.no_at_fault_collision, self.drivable_area_compliance,
                      self.ttc_within_bound, ep, self.comfort, config,
                      self.driving_direction_compliance, mp)
    return self.replace(reference_progress=jnp.broadcast_to(reference, ep.shape),
                        ego_progress=ep, making_progress=mp, score=score)


def score_ego_episode(state: SimulatorState, *, start_step: int, end_step: int,
                      ego_offroad: jax.Array | None = None,
                      reference_progress: jax.Array | None = None,
                      config: PDMConfig = PDMConfig()) -> EpisodeScores:
  """Scores the SDC's simulated steps ``start_step .. end_step`` of ``state``.

  Args:
    state: the state after the episode (``sim_trajectory`` holds the simulation; the
      log gives the route), batch ``(...)``.
    start_step: the episode's first step (the last logged one, ``init_steps - 1``).
    end_step: its last simulated step (inclusive).
    ego_offroad: optional bool ``(..., W)`` off-road flags of the SDC at steps
      ``start_step + 1 .. end_step``; computed from the road edges with
      ``drivable_tolerance`` when None.
    reference_progress: EP's denominator ``(...)`` in metres; default the log's progress.
    config: thresholds and weights.

  Returns:
    :class:`EpisodeScores` ``(...)``.
  """
  traj = state.sim_trajectory
  if not 0 <= start_step < end_step < traj.num_timesteps:
    raise ValueError(f'score_ego_episode: need 0 <= start_step ({start_step}) < end_step '
                     f'({end_step}) < {traj.num_timesteps}.')
  index = sdc_index(state)
  rows = index[..., None]
  ego = jax.tree_util.tree_map(lambda a: take_object(a, index, -2)[..., 0, :], traj)
  valid = ego.valid[..., start_step]

  contacts = first_contacts(traj, rows, start_step, end_step, config)
  pick = lambda a: a[..., 0, :]
  at_fault = pick(contacts.row_at_fault)
  false_positive = pick(contacts.other_at_fault) & ~at_fault

  if ego_offroad is None:
    ego_offroad = ego_offroad_flags(state, start_step + 1, end_step,
                                    config.drivable_tolerance)
  offroad = jnp.any(ego_offroad, -1)

  window = lambda a: a[..., start_step:end_step + 1]
  # TTC at steps start+1 .. end (the velocity of each comes from the step before).
  ttc = pdm_terms.ego_time_to_collision(
      window(traj.x), window(traj.y), window(traj.length), window(traj.width),
      window(traj.yaw), window(traj.valid), index, horizon=config.ttc_horizon,
      time_step=config.ttc_time_step, dt=config.dt, stopped_speed=config.stopped_speed,
      no_collision=config.ttc_horizon)
  min_ttc = jnp.min(ttc, -1)
  against = pdm_terms.against_traffic_progress(
      window(ego.x), window(ego.y), window(ego.valid), state.roadgraph_points,
      lane_radius=config.lane_radius)
  direction, against_traffic = pdm_terms.driving_direction_compliance(
      against, window=config.direction_window, compliance=config.direction_compliance,
      violation=config.direction_violation)

  # Short episodes get a shorter smoothing window (none shorter than 1 step: comfortable).
  smooth = min(config.comfort_window, (end_step - start_step) // 3)
  if smooth >= 1:
    short = dataclasses.replace(config, comfort_window=smooth)
    extremes = comfort_extremes(window(ego.x), window(ego.y), window(ego.yaw), short)
    comfort = is_comfortable(extremes, config)
  else:
    comfort = jnp.ones_like(valid)

  route = sdc_route(state)
  xy = lambda t: jnp.stack([ego.x[..., t], ego.y[..., t]], -1)[..., None, :]
  s0 = project_onto_path(route.points, route.arc, xy(start_step))[..., 0]
  s1 = project_onto_path(route.points, route.arc, xy(end_step))[..., 0]
  progress = s1 - s0
  arc = route.arc[..., 0, :]
  log_progress = arc[..., end_step] - arc[..., start_step]
  reference = log_progress if reference_progress is None else reference_progress

  f32 = lambda b: jnp.asarray(b, jnp.float32)
  scores = EpisodeScores(
      valid=valid, no_at_fault_collision=f32(~jnp.any(at_fault, -1)),
      drivable_area_compliance=f32(~offroad), driving_direction_compliance=direction,
      making_progress=jnp.zeros_like(progress),
      ttc_within_bound=f32(min_ttc >= config.ttc_threshold), comfort=f32(comfort),
      ego_progress=jnp.zeros_like(progress), score=jnp.zeros_like(progress),
      against_traffic=against_traffic,
      progress=progress, log_progress=log_progress,
      reference_progress=jnp.zeros_like(progress), min_ttc=min_ttc,
      ego_collision=jnp.any(pick(contacts.collided), -1),
      at_fault_collision=jnp.any(at_fault, -1),
      at_fault_count=jnp.sum(at_fault, -1).astype(jnp.int32),
      false_positive_count=jnp.sum(false_positive, -1).astype(jnp.int32))
  return scores.with_reference_progress(reference, config)


def episode_length(metrics) -> int:
  """Simulator steps ``R S`` of a rollout, from its metrics' shape ``(..., R, S, N)``."""
  if not metrics:
    raise ValueError('The rollout has no metrics to read the episode length from.')
  shape = next(iter(metrics.values())).value.shape
  return shape[-3] * shape[-2]


def score_closed_loop(result, *, start_step: int, reference_progress: jax.Array | None = None,
                      config: PDMConfig = PDMConfig()) -> EpisodeScores:
  """:func:`score_ego_episode` of a ``ClosedLoopResult`` (``final_state``, ``metrics``).

  The episode runs from ``start_step`` for :func:`episode_length` steps; the SDC's
  off-road flags come from the road edges with ``drivable_tolerance`` (the
  environment's ``offroad`` metric has none). Jittable.
  """
  end_step = start_step + episode_length(result.metrics)
  return score_ego_episode(result.final_state, start_step=start_step, end_step=end_step,
                           reference_progress=reference_progress, config=config)


@functools.lru_cache(maxsize=16)
def _compiled_scorer(start_step: int, end_step: int, config: PDMConfig, options: tuple):
  return jax.jit(lambda state, offroad: score_ego_episode(
      state, start_step=start_step, end_step=end_step, ego_offroad=offroad, config=config),
                 compiler_options=dict(options) or None)


def episode_scorer(start_step: int, end_step: int, config: PDMConfig = PDMConfig(),
                   jit_options=None):
  """A compiled ``(state, ego_offroad (..., end - start)) -> EpisodeScores``.

  The road-edge index is dropped from the state before the call (the off-road flags are
  given), so every caller with the same shapes shares one compilation. ``jit_options``:
  compiler options.
  """
  fn = _compiled_scorer(start_step, end_step, config,
                        tuple(sorted((jit_options or {}).items())))
  return lambda state, ego_offroad: fn(state.replace(road_edge_index=None),
                                       jnp.asarray(ego_offroad, bool))


# -- rank correlations ---------------------------------------------------------------------


def rankdata(values) -> np.ndarray:
  """Ranks 1..n of a 1-D sequence, ties sharing their average rank (float64)."""
  a = np.asarray(values, np.float64)
  if a.ndim != 1:
    raise ValueError(f'rankdata expects a 1-D sequence, got shape {a.shape}.')
  order = np.argsort(a, kind='stable')
  ranks = np.empty(len(a))
  i = 0
  while i < len(a):
    j = i
    while j + 1 < len(a) and a[order[j + 1]] == a[order[i]]:
      j += 1
    ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
    i = j + 1
  return ranks


def _paired(a, b, what: str) -> tuple[np.ndarray, np.ndarray]:
  """The pairs where both values are finite (a planner without a score in one mode
  takes no part in either ranking); at least 2 items must be given."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.ndim != 1 or a.shape != b.shape:
    raise ValueError(f'{what} expects two 1-D sequences of equal length, got shapes '
                     f'{a.shape} and {b.shape}.')
  if len(a) < 2:
    raise ValueError(f'{what} needs at least 2 items, got {len(a)}.')
  both = np.isfinite(a) & np.isfinite(b)
  return a[both], b[both]


def spearman(a, b) -> float:
  """Spearman's rho: Pearson correlation of the (average-tie) ranks over the pairs where
  both are finite; NaN if constant or fewer than 2 such pairs."""
  a, b = _paired(a, b, 'spearman')
  if len(a) < 2:
    return float('nan')
  ra, rb = rankdata(a) - (len(a) + 1) / 2, rankdata(b) - (len(b) + 1) / 2
  denom = np.sqrt(np.sum(ra**2) * np.sum(rb**2))
  return float(np.sum(ra * rb) / denom) if denom > 0 else float('nan')


def kendall_tau(a, b) -> float:
  """Kendall's tau-b: ``(C - D) / sqrt((n0 - n1)(n0 - n2))`` over all pairs, with ties
  in ``a`` (n1) and ``b`` (n2) handled, over the pairs where both are finite; NaN if
  either sequence is constant or fewer than 2 such pairs remain."""
  a, b = _paired(a, b, 'kendall_tau')
  if len(a) < 2:
    return float('nan')
  da = np.sign(a[:, None] - a[None, :])
  db = np.sign(b[:, None] - b[None, :])
  upper = np.triu(np.ones_like(da, bool), 1)
  s = np.sum((da * db)[upper])
  n0 = np.sum(upper)
  n1, n2 = np.sum((da == 0)[upper]), np.sum((db == 0)[upper])
  denom = np.sqrt((n0 - n1) * (n0 - n2))
  return float(s / denom) if denom > 0 else float('nan')


__all__ = [
    'Contacts', 'EpisodeScores', 'PDMConfig', 'comfort_extremes', 'contact_fault',
    'ego_offroad_flags', 'episode_length', 'episode_scorer',
    'first_contacts', 'is_comfortable', 'kendall_tau', 'making_progress', 'pair_margins',
    'pdm_score', 'progress_ratio', 'rankdata', 'score_closed_loop', 'score_ego_episode',
    'spearman',
]
