"""SPACER policy observation: ego, partner and road features in each agent's frame.

For every agent slot i (the "ego") at ``state.timestep``:

* **ego** ``(E = 16)``: speed, length, width, goal offset (x, y) in the ego frame and
  a goal-visible flag (goal dropout zeroes the offset), collided / off-road flags,
  agent-type one-hot (vehicle, pedestrian, cyclist), the state of the traffic light of
  the lane ahead (one-hot: none, stop, caution, go) and the distance to its stop point.
  The lane ahead is the nearest lane point of a light-controlled lane that lies in
  front of the ego, within a widening cone, running the ego's way; the light is found
  by that lane's id, as ``TrafficLights.lane_ids`` binds signals to roadgraph ``ids``.
* **partners** ``(K_p, P = 10)``: up to ``max_partners`` other valid objects within
  ``partner_radius``: speed, relative position, relative heading (cos, sin), length,
  width, type one-hot.
* **road** ``(K_r, R = 12)``: the ``num_road_points`` nearest points of the prepared
  road set: relative position, direction, segment length, road-type one-hot.

Everything is in the ego's frame (x forward, y left) and scaled to [-1, 1].

Cost. Ranking all ~20000 roadgraph points for every agent at every step is too slow,
so :func:`prepare_road_points` runs once per scenario (at reset): it resamples the
polylines to ``road_spacing`` metres, keeps the ``max_prepared_points`` points nearest
to the agents' logged paths, and compacts the lane points controlled by traffic lights
into a small separate set. Each step then ranks only the prepared set.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim.batching import map_leading_dims
from spacer_jax.sim.datatypes import (
  TIMESTEP_SECONDS,
  MapElementIds,
  RoadgraphPoints,
  SimulatorState,
  TrafficLightStates,
  Trajectory,
  is_lane,
  slice_time,
)
from spacer_jax.sim.geometry import smallest_k
from spacer_jax.tokens.feasibility import last_token_speed
from spacer_jax.tokens.vocabulary import NUM_AGENT_TYPES, agent_type_index

# agent_type_index (re-exported) is the one type index of heads and token vocabularies:
# 0 vehicle (also UNSET, OTHER), 1 pedestrian, 2 cyclist.

NUM_ROAD_TYPES = 7  # lane, bike lane, road line, road edge, stop sign, crosswalk, bump.
ROAD_EDGE_CLASS = 3  # Its index in that one-hot (road_type_class).
NUM_LIGHT_STATES = 4  # none / unknown, stop, caution, go.
EGO_DIM = 8 + NUM_AGENT_TYPES + NUM_LIGHT_STATES + 1
# Ego motion over the last ``motion_lag_steps`` (when on): history available, longitudinal
# acceleration, yaw rate. What the previous token did, so that the policy can continue a
# turn or a braking manoeuvre as the reference (which reads the token history) does.
MOTION_DIM = 3
ACCEL_SCALE = 5.0  # m/s^2 -> 1.
YAW_RATE_SCALE = 1.0  # rad/s -> 1.
PARTNER_DIM = 7 + NUM_AGENT_TYPES
ROAD_DIM = 5 + NUM_ROAD_TYPES

# A lane point is "ahead" of the ego when it lies in front, inside a cone that widens
# with distance (lateral tolerance LIGHT_LATERAL_M + LIGHT_LATERAL_SLOPE * ahead), and
# runs roughly the ego's way (cosine of the heading difference >= LIGHT_MIN_ALIGN).
LIGHT_LATERAL_M = 2.0
LIGHT_LATERAL_SLOPE = 0.1
LIGHT_MIN_ALIGN = 0.7
_BUCKET_OFFSET = 0.37


@dataclasses.dataclass(frozen=True)
class ObservationConfig:
  """Sizes and scales of the SPACER observation. Distances in metres, speeds in m/s.

  Attributes:
    max_partners: partner slots per ego (the paper's 63: up to 64 agents per world).
    partner_radius: partners farther than this are masked out; also the position scale.
    num_road_points: nearest road points per ego (the paper's 200).
    road_spacing: polylines are resampled to about this spacing when preparing.
    max_prepared_points: road points kept per scenario, nearest to the agents' paths.
    max_light_points: traffic-light-controlled lane points kept per scenario.
    light_radius: lane points beyond this do not count as "the lane ahead".
    anchor_stride: logged steps between the path samples used to rank road points.
    speed_scale: speeds are divided by this and clipped to [0, 1].
    size_scale: lengths and widths are divided by this and clipped to [0, 1].
    road_scale: road point positions are divided by this and clipped to [-1, 1].
    goal_scale: goal offsets are divided by this; longer offsets keep their direction
      and get norm 1.
    goal_dropout: probability that an agent's goal is hidden for an episode (used by
      :func:`sample_goal_visible`).
    motion_lag_steps: simulator steps back to the pose the ego's motion features
      (acceleration, yaw rate; :data:`MOTION_DIM`) are measured from; 2 = the last 0.2 s
      token. 0 = no motion features (runs from before the field).
    num_edge_points: of the ``num_road_points``, this many are the nearest road-edge
      points (the others the nearest of any type), so a road edge within reach is never
      crowded out by the lanes and lines around the agent. 0 = nearest of any type only
      (runs from before the field).
    token_speed_steps: speeds (ego and partners) are mean speeds over the last this
      many simulated steps, from positions, and the acceleration feature the change
      between two such windows: with tokens of S steps and this = S, the speed seen
      after the log's history and after executed tokens is measured alike (a token's
      sub-steps differ in speed by about 1 m/s). Falls back to the velocity where the
      earlier pose is unknown. 0 = the last sub-step's velocity (runs from before the
      field).
    feasible_actions: ``SelfPlay.observe`` adds each agent's feasible next tokens
      (``PolicyObservation.feasible``, ``tokens.feasibility``: within its type's
      speed-change bound of its last token's speed) and the policy networks restrict
      their logits to them, so acting, PPO ratios, entropy and the KL all see the same
      distribution. False (runs from before the field) = every token allowed.
  """

  max_partners: int = 63
  partner_radius: float = 50.0
  num_road_points: int = 200
  road_spacing: float = 2.0
  max_prepared_points: int = 2048
  max_light_points: int = 256
  light_radius: float = 50.0
  anchor_stride: int = 10
  speed_scale: float = 30.0
  size_scale: float = 20.0
  road_scale: float = 50.0
  goal_scale: float = 100.0
  goal_dropout: float = 0.0
  motion_lag_steps: int = 0
  num_edge_points: int = 0
  token_speed_steps: int = 0
  feasible_actions: bool = False

  @property
  def ego_dim(self) -> int:
    """Width of the ego feature vector under this config."""
    return EGO_DIM + (MOTION_DIM if self.motion_lag_steps else 0)

  def __post_init__(self):
    for name in ('max_partners', 'num_road_points', 'max_prepared_points',
                 'max_light_points', 'anchor_stride'):
      if getattr(self, name) < 1:
        raise ValueError(f'ObservationConfig.{name} must be >= 1, got {getattr(self, name)}.')
    for name in ('partner_radius', 'road_spacing', 'light_radius', 'speed_scale',
                 'size_scale', 'road_scale', 'goal_scale'):
      if not getattr(self, name) > 0:
        raise ValueError(f'ObservationConfig.{name} must be > 0, got {getattr(self, name)}.')
    for name in ('motion_lag_steps', 'token_speed_steps', 'num_edge_points'):
      if getattr(self, name) < 0:
        raise ValueError(f'ObservationConfig.{name} must be >= 0, got '
                         f'{getattr(self, name)}.')
    if self.num_edge_points >= self.num_road_points:
      raise ValueError(f'ObservationConfig.num_edge_points={self.num_edge_points} must be '
                       f'below num_road_points={self.num_road_points} (the rest are the '
                       'nearest points of any type).')
    if not 0.0 <= self.goal_dropout <= 1.0:
      raise ValueError(f'ObservationConfig.goal_dropout must be in [0, 1], got '
                       f'{self.goal_dropout}.')
    if self.num_road_points > self.max_prepared_points:
      raise ValueError(f'ObservationConfig.num_road_points={self.num_road_points} exceeds '
                       f'max_prepared_points={self.max_prepared_points}.')


@struct.dataclass
class RoadPointSet:
  """A scenario's reduced road set, prepared once by :func:`prepare_road_points`.

  Coordinates are kept as separate arrays (not ``(..., 2)`` pairs): XLA on CPU runs
  the per-step distance computations much faster on them.

  Attributes (M = prepared points, Q = light points):
    x, y: ``(..., M)`` positions, world frame, m; nearest to the agents' paths first.
    dir_x, dir_y: ``(..., M)`` unit direction towards the next prepared point of the
      same polyline (at a polyline's last point: from the previous one; zero for
      single-point features such as stop signs).
    static_features: ``(..., M, 1 + NUM_ROAD_TYPES)`` scaled segment length and the
      road-type one-hot (frame-independent, so computed once).
    valid: ``(..., M)`` bool.
    light_x, light_y, light_dir_x, light_dir_y: ``(..., Q)`` points (and directions) of
      lanes that a traffic light controls, m.
    light_lane_ids: ``(..., Q)`` int32 polyline id (matched to ``TrafficLights.lane_ids``).
    light_valid: ``(..., Q)`` bool.
  """

  x: jax.Array
  y: jax.Array
  dir_x: jax.Array
  dir_y: jax.Array
  static_features: jax.Array
  valid: jax.Array
  light_x: jax.Array
  light_y: jax.Array
  light_dir_x: jax.Array
  light_dir_y: jax.Array
  light_lane_ids: jax.Array
  light_valid: jax.Array

  @property
  def num_points(self) -> int:
    return self.x.shape[-1]


@struct.dataclass
class PolicyObservation:
  """Per-agent policy input (N agent slots, all features in [-1, 1]).

  Columns: ego = speed, length, width, goal x, goal y, goal visible, collided, off
  road, type one-hot (3), light one-hot (none, stop, caution, go), stop-point
  distance. Partners = x, y, cos and sin of the relative heading, speed, length,
  width, type one-hot (3). Road = x, y, direction x, y, segment length, road-type
  one-hot (lane, bike lane, road line, road edge, stop sign, crosswalk, speed bump).

  Attributes:
    ego: ``(..., N, config.ego_dim)`` float32 (``EGO_DIM``, plus ``MOTION_DIM`` with
      motion features).
    partners: ``(..., N, K_p, PARTNER_DIM)`` float32, K_p = min(max_partners, N - 1).
    partner_mask: ``(..., N, K_p)`` bool.
    road: ``(..., N, K_r, ROAD_DIM)`` float32, K_r = min(num_road_points, M).
    road_mask: ``(..., N, K_r)`` bool.
    type_index: ``(..., N)`` int32 in {0, 1, 2} (vehicle, pedestrian, cyclist).
    valid: ``(..., N)`` bool: the slot is an agent to act for (mask and present).
    feasible: ``(..., N, K)`` bool, the tokens each agent may take next (set by
      ``SelfPlay.observe`` with ``ObservationConfig.feasible_actions``), or None (all).
  """

  ego: jax.Array
  partners: jax.Array
  partner_mask: jax.Array
  road: jax.Array
  road_mask: jax.Array
  type_index: jax.Array
  valid: jax.Array
  feasible: Optional[jax.Array] = None


def road_type_class(types: jax.Array) -> jax.Array:
  """Road-type class in [0, NUM_ROAD_TYPES) of :class:`MapElementIds` values."""
  m = MapElementIds
  conditions = [
      types == m.LANE_BIKE_LANE,
      (types >= m.ROAD_LINE_UNKNOWN) & (types <= m.ROAD_LINE_PASSING_DOUBLE_YELLOW),
      (types >= m.ROAD_EDGE_UNKNOWN) & (types <= m.ROAD_EDGE_MEDIAN),
      types == m.STOP_SIGN, types == m.CROSSWALK, types == m.SPEED_BUMP]
  return jnp.select(conditions, list(range(1, NUM_ROAD_TYPES)), 0).astype(jnp.int32)


def light_state_class(state: jax.Array) -> jax.Array:
  """0 none/unknown, 1 stop (incl. arrow and flashing), 2 caution, 3 go."""
  s = TrafficLightStates
  stop = (state == s.STOP) | (state == s.ARROW_STOP) | (state == s.FLASHING_STOP)
  caution = ((state == s.CAUTION) | (state == s.ARROW_CAUTION)
             | (state == s.FLASHING_CAUTION))
  go = (state == s.GO) | (state == s.ARROW_GO)
  return jnp.select([stop, caution, go], [1, 2, 3], 0).astype(jnp.int32)


def goal_positions(log_trajectory: Trajectory) -> jax.Array:
  """Each object's last valid logged position, ``(..., N, 2)`` metres.

  Objects never valid get the position stored at the last step (the -1 fill); check
  ``log_trajectory.valid.any(-1)`` where that matters.
  """
  valid = log_trajectory.valid
  num_t = valid.shape[-1]
  last = num_t - 1 - jnp.argmax(valid[..., ::-1], axis=-1)  # (..., N)
  xy = log_trajectory.xy  # (..., N, T, 2)
  return jnp.take_along_axis(xy, last[..., None, None], axis=-2)[..., 0, :]


def sample_goal_visible(rng: jax.Array, shape: tuple[int, ...],
                        config: ObservationConfig = ObservationConfig()) -> jax.Array:
  """Goal dropout: True (goal shown) with probability ``1 - config.goal_dropout``."""
  return jax.random.uniform(rng, shape) >= config.goal_dropout


def _top_nearest(d2: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """Indices of the ``k`` smallest entries of the last axis and whether they are finite."""
  d, idx = smallest_k(d2, k)
  return idx, jnp.isfinite(d)


# -- preparation (once per scenario) -------------------------------------------------


def _prepare_single(rg: RoadgraphPoints, anchor_x: jax.Array, anchor_y: jax.Array,
                    anchor_ok: jax.Array, tl_lane_ids: jax.Array, tl_valid: jax.Array,
                    config: ObservationConfig) -> RoadPointSet:
  """One scenario: rg ``(P,)``, anchors ``(S, A)``, lights ``(L, T)``."""
  num_p = rg.x.shape[0]
  idx = jnp.arange(num_p)
  same_prev = jnp.concatenate([jnp.zeros(1, bool), rg.valid[1:] & rg.valid[:-1]
                               & (rg.ids[1:] == rg.ids[:-1])])
  same_next = jnp.concatenate([same_prev[1:], jnp.zeros(1, bool)])
  step = jnp.where(same_prev, jnp.hypot(rg.x - jnp.roll(rg.x, 1), rg.y - jnp.roll(rg.y, 1)),
                   0.0)
  cum = jnp.cumsum(step)
  start = jax.lax.cummax(jnp.where(same_prev, 0, idx))
  # The offset keeps regularly sampled polylines (e.g. every 0.5 m) off the bucket
  # boundaries, where float rounding would decide which point is kept.
  bucket = jnp.floor((cum - cum[start]) / config.road_spacing + _BUCKET_OFFSET)
  new_bucket = bucket != jnp.concatenate([jnp.full(1, -1.0), bucket[:-1]])
  # Keep each polyline's first and last point and one point per spacing interval.
  keep = rg.valid & (~same_prev | ~same_next | new_bucket)

  # Compaction in roadgraph order (a scatter, cheaper than a sort).
  count = jnp.sum(keep)
  slot = jnp.where(keep, jnp.cumsum(keep) - 1, num_p)
  src = jnp.zeros(num_p, jnp.int32).at[slot].set(idx.astype(jnp.int32), mode='drop')
  ok = idx < count
  x, y, ids, types = rg.x[src], rg.y[src], rg.ids[src], rg.types[src]
  chord_x, chord_y = jnp.roll(x, -1) - x, jnp.roll(y, -1) - y
  joined = ok & jnp.roll(ok, -1) & (jnp.roll(ids, -1) == ids) & (idx < num_p - 1)
  seg = jnp.where(joined, jnp.hypot(chord_x, chord_y), 0.0)
  inv = 1.0 / jnp.maximum(seg, 1e-6)
  dir_x = jnp.where(seg > 0, chord_x * inv, rg.dir_x[src])
  dir_y = jnp.where(seg > 0, chord_y * inv, rg.dir_y[src])
  # A polyline's last point continues the direction of the segment before it.
  last = ~joined & jnp.roll(joined, 1)
  dir_x = jnp.where(last, jnp.roll(dir_x, 1), dir_x)
  dir_y = jnp.where(last, jnp.roll(dir_y, 1), dir_y)

  # Rank by squared distance to the nearest sampled path point of any object.
  def nearest(d_min, anchors):
    ax, ay, a_ok = anchors
    ax = jnp.where(a_ok, ax, jnp.inf)
    d2 = (x[:, None] - ax[None]) ** 2 + (y[:, None] - ay[None]) ** 2
    # Materialised before the reduction: XLA's fused reduce is ~20x slower on CPU.
    d2 = jax.lax.optimization_barrier(d2)
    return jnp.minimum(d_min, jnp.min(d2, axis=-1)), None
  d_min, _ = jax.lax.scan(nearest, jnp.full(num_p, jnp.inf),
                          (anchor_x, anchor_y, anchor_ok))
  # A scene with no valid object still keeps points (top_k breaks the tie by index).
  d_min = jnp.where(ok, jnp.where(jnp.isfinite(d_min), d_min, 1e12), jnp.inf)

  sel, sel_ok = _top_nearest(d_min, min(config.max_prepared_points, num_p))
  onehot = jax.nn.one_hot(road_type_class(types[sel]), NUM_ROAD_TYPES)
  seg_feat = jnp.clip(seg[sel] / (2.0 * config.road_spacing), 0.0, 1.0)
  static = jnp.concatenate([seg_feat[:, None], onehot], axis=-1) * sel_ok[:, None]

  # Lane points of lanes that a light controls at some logged step.
  controlled_ids = jnp.sort(jnp.where(tl_valid, tl_lane_ids, -2).reshape(-1))
  pos = jnp.clip(jnp.searchsorted(controlled_ids, ids), 0, controlled_ids.shape[0] - 1)
  controlled = ok & is_lane(types) & (controlled_ids[pos] == ids) & (ids >= 0)
  lsel, lsel_ok = _top_nearest(jnp.where(controlled, d_min, jnp.inf),
                               min(config.max_light_points, num_p))
  zero = lambda v, m: jnp.where(m, v, 0.0)
  return RoadPointSet(
      x=zero(x[sel], sel_ok), y=zero(y[sel], sel_ok), dir_x=zero(dir_x[sel], sel_ok),
      dir_y=zero(dir_y[sel], sel_ok), static_features=static, valid=sel_ok,
      light_x=zero(x[lsel], lsel_ok), light_y=zero(y[lsel], lsel_ok),
      light_dir_x=zero(dir_x[lsel], lsel_ok), light_dir_y=zero(dir_y[lsel], lsel_ok),
      light_lane_ids=jnp.where(lsel_ok, ids[lsel], -1), light_valid=lsel_ok)


def prepare_road_points(state: SimulatorState,
                        config: ObservationConfig = ObservationConfig()) -> RoadPointSet:
  """The reduced road set of each scenario (run once, e.g. right after ``env.reset``).

  Resamples polylines to ``config.road_spacing``, ranks the points by their distance
  to the objects' logged paths (every ``anchor_stride`` steps) and current simulated
  positions, keeps the nearest ``max_prepared_points``, and separately the nearest
  ``max_light_points`` lane points controlled by a traffic light.

  Args:
    state: ``SimulatorState`` with batch shape ``(...)``.
    config: sizes.

  Returns:
    :class:`RoadPointSet` with leading dims ``(...)``.
  """
  log, cur = state.log_trajectory, state.current_sim_trajectory
  steps = jnp.arange(0, log.num_timesteps, config.anchor_stride)
  # Anchors ``(..., S, N)``: sampled logged positions, then the current simulated ones.
  def anchors(log_field, cur_field):
    both = jnp.concatenate([log_field[..., steps], cur_field], axis=-1)  # (..., N, S)
    return jnp.swapaxes(both, -1, -2)
  tl = state.log_traffic_light
  fn = lambda rg, ax, ay, a_ok, lid, lv: _prepare_single(rg, ax, ay, a_ok, lid, lv, config)
  return map_leading_dims(fn, len(state.shape))(
      state.roadgraph_points, anchors(log.x, cur.x), anchors(log.y, cur.y),
      anchors(log.valid, cur.valid), tl.lane_ids, tl.valid)


# -- per-step features ------------------------------------------------------------------
# Frames: (c, s) = (cos, sin) of the ego yaw; a world offset (gx, gy) is
# (c gx + s gy, -s gx + c gy) in the ego frame. Coordinates stay in separate arrays.


def _partners(x, y, yaw, c, s, speed_f, size_f, type_onehot, valid,
              config: ObservationConfig):
  """Partner features ``(N, K_p, P)`` and mask for one scenario."""
  n = x.shape[0]
  gx, gy = x[None, :] - x[:, None], y[None, :] - y[:, None]  # (ego, other)
  near = (valid[:, None] & valid[None, :] & ~jnp.eye(n, dtype=bool)
          & (gx * gx + gy * gy <= config.partner_radius**2))
  k = min(config.max_partners, n - 1)
  if k == n - 1:
    # Every other object fits: a static "all but self" gather, no ranking needed.
    cols = jnp.arange(n - 1)[None, :]
    others = cols + (cols >= jnp.arange(n)[:, None])
  else:
    others, _ = _top_nearest(jnp.where(near, gx * gx + gy * gy, jnp.inf), k)
  take = lambda a: jnp.take_along_axis(a, others, axis=1)
  gx, gy, mask = take(gx), take(gy), take(near)
  cc, ss = c[:, None], s[:, None]
  dyaw = yaw[others] - yaw[:, None]
  feats = jnp.concatenate([
      jnp.stack([(cc * gx + ss * gy) / config.partner_radius,
                 (cc * gy - ss * gx) / config.partner_radius,
                 jnp.cos(dyaw), jnp.sin(dyaw), speed_f[others]], axis=-1),
      size_f[others], type_onehot[others]], axis=-1)
  return jnp.where(mask[..., None], feats, 0.0), mask


def observed_road_points(x: jax.Array, y: jax.Array, road: RoadPointSet,
                         config: ObservationConfig) -> tuple[jax.Array, jax.Array]:
  """Which prepared road points agents at ``x, y`` ``(N,)`` (m, one scenario) observe.

  The ``num_road_points - num_edge_points`` nearest of any type, then the
  ``num_edge_points`` nearest road-edge points. Returns ``(index (N, K_r) int32 into
  the road set, found (N, K_r) bool)``.
  """
  d2 = (road.x[None] - x[:, None]) ** 2 + (road.y[None] - y[:, None]) ** 2  # (N, M)
  d2 = jnp.where(road.valid[None], d2, jnp.inf)
  k = min(config.num_road_points, road.num_points)
  e = min(config.num_edge_points, k - 1)
  idx, found = _top_nearest(d2, k - e)
  if e:
    # Reserved slots: the nearest road-edge points, whatever crowds the agent's view.
    edge = is_edge_point(road)
    edge_idx, edge_found = _top_nearest(jnp.where(edge[None], d2, jnp.inf), e)
    idx = jnp.concatenate([idx, edge_idx], axis=-1)
    found = jnp.concatenate([found, edge_found], axis=-1)
  return idx, found


def is_edge_point(road: RoadPointSet) -> jax.Array:
  """``(..., M)`` bool: the prepared points that lie on road edges."""
  return road.valid & (road.static_features[..., 1 + ROAD_EDGE_CLASS] > 0.5)


def _road(x, y, c, s, ego_ok, road: RoadPointSet, config: ObservationConfig):
  """The nearest prepared road points ``(N, K_r, R)`` and mask for one scenario."""
  idx, found = observed_road_points(x, y, road, config)
  mask = found & ego_ok[:, None]
  gx, gy = road.x[idx] - x[:, None], road.y[idx] - y[:, None]
  dx, dy = road.dir_x[idx], road.dir_y[idx]
  cc, ss = c[:, None], s[:, None]
  scale = config.road_scale
  feats = jnp.concatenate([
      jnp.stack([jnp.clip((cc * gx + ss * gy) / scale, -1.0, 1.0),
                 jnp.clip((cc * gy - ss * gx) / scale, -1.0, 1.0),
                 # Clipped: rounding can push a rotated unit vector just past 1.
                 jnp.clip(cc * dx + ss * dy, -1.0, 1.0),
                 jnp.clip(cc * dy - ss * dx, -1.0, 1.0)], axis=-1),
      road.static_features[idx]], axis=-1)
  return jnp.where(mask[..., None], feats, 0.0), mask


def _light_ahead(x, y, c, s, road: RoadPointSet, tl_x, tl_y, tl_state, tl_lane_ids,
                 tl_valid, config: ObservationConfig):
  """State class ``(N,)`` of the light of the lane ahead and the scaled distance
  ``(N,)`` to its stop point (1 when there is none)."""
  gx, gy = road.light_x[None] - x[:, None], road.light_y[None] - y[:, None]  # (N, Q)
  cc, ss = c[:, None], s[:, None]
  ahead, lateral = cc * gx + ss * gy, jnp.abs(cc * gy - ss * gx)
  align = cc * road.light_dir_x[None] + ss * road.light_dir_y[None]
  dist = jnp.hypot(gx, gy)
  cand = (road.light_valid[None] & (ahead > 0)
          & (lateral <= LIGHT_LATERAL_M + LIGHT_LATERAL_SLOPE * ahead)
          & (align >= LIGHT_MIN_ALIGN) & (dist <= config.light_radius))
  dist = jnp.where(cand, dist, jnp.inf)
  j = jnp.argmin(dist, axis=-1)
  nearest = jnp.min(dist, axis=-1)
  lane = road.light_lane_ids[j]
  # Bind by lane id, as Waymax does: light slots may change order between steps.
  match = tl_valid[None] & (tl_lane_ids[None] == lane[:, None])  # (N, L)
  slot = jnp.argmax(match, axis=-1)
  cls = jnp.where(jnp.isfinite(nearest) & jnp.any(match, axis=-1),
                  light_state_class(tl_state[slot]), 0)
  stop = jnp.hypot(tl_x[slot] - x, tl_y[slot] - y) / config.light_radius
  return cls, jnp.where(cls > 0, jnp.minimum(stop, 1.0), 1.0)


def _observe_single(x, y, yaw, speed, size, types, present, agent_mask, goal, collided,
                    offroad, goal_visible, tl_x, tl_y, tl_state, tl_lane_ids, tl_valid,
                    motion, road: RoadPointSet, config: ObservationConfig
                    ) -> PolicyObservation:
  type_index = agent_type_index(types)
  type_onehot = jax.nn.one_hot(type_index, NUM_AGENT_TYPES)
  speed_f = jnp.clip(speed / config.speed_scale, 0.0, 1.0)
  size_f = jnp.clip(size / config.size_scale, 0.0, 1.0)
  ego_ok = agent_mask & present
  c, s = jnp.cos(yaw), jnp.sin(yaw)

  gx, gy = goal[:, 0] - x, goal[:, 1] - y
  goal_local = jnp.stack([c * gx + s * gy, c * gy - s * gx], -1) / config.goal_scale
  # Radial clip: a far goal keeps its direction with norm 1.
  norm = jnp.sqrt(jnp.sum(goal_local**2, axis=-1, keepdims=True))
  goal_local = jnp.where(goal_visible[:, None], goal_local / jnp.maximum(1.0, norm), 0.0)
  light_cls, light_d = _light_ahead(x, y, c, s, road, tl_x, tl_y, tl_state, tl_lane_ids,
                                    tl_valid, config)
  ego = jnp.concatenate([
      speed_f[:, None], size_f, goal_local,
      jnp.stack([goal_visible, collided, offroad], -1).astype(jnp.float32),
      type_onehot, jax.nn.one_hot(light_cls, NUM_LIGHT_STATES), light_d[:, None]]
      + ([motion] if config.motion_lag_steps else []), axis=-1)
  partners, partner_mask = _partners(x, y, yaw, c, s, speed_f, size_f, type_onehot,
                                     present, config)
  partner_mask = partner_mask & ego_ok[:, None]
  road_f, road_mask = _road(x, y, c, s, ego_ok, road, config)
  return PolicyObservation(
      ego=jnp.where(ego_ok[:, None], ego, 0.0),
      partners=jnp.where(partner_mask[..., None], partners, 0.0),
      partner_mask=partner_mask, road=road_f, road_mask=road_mask,
      type_index=type_index, valid=ego_ok)


def _check(name: str, value: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  value = jnp.asarray(value)
  if tuple(value.shape) != shape:
    raise ValueError(f'build_observation: {name} has shape {tuple(value.shape)}, expected '
                     f'{shape} (state batch shape + (num_objects,) ...).')
  return value


def build_observation(state: SimulatorState, agent_mask: jax.Array, goal: jax.Array,
                      collided: jax.Array, offroad: jax.Array, goal_visible: jax.Array,
                      road: RoadPointSet | None = None,
                      config: ObservationConfig = ObservationConfig()
                      ) -> PolicyObservation:
  """The :class:`PolicyObservation` of every agent slot at ``state.timestep``.

  Args:
    state: ``SimulatorState``, batch shape ``(...)``, N objects. Partners are the
      objects valid in the simulated trajectory at the current step (hide removed
      agents by marking them invalid there).
    agent_mask: ``(..., N)`` bool, slots to build an observation for (e.g. controlled
      and alive); others get zero features and empty masks.
    goal: ``(..., N, 2)`` goal positions, world frame, m (see :func:`goal_positions`).
    collided: ``(..., N)`` bool, the agent has collided (episode status).
    offroad: ``(..., N)`` bool, the agent has gone off road.
    goal_visible: ``(..., N)`` bool; False hides the goal (goal dropout).
    road: the scenario's :class:`RoadPointSet` from :func:`prepare_road_points`; None
      prepares it here (slow: do it once per episode instead).
    config: sizes and scales.

  Returns:
    :class:`PolicyObservation` with leading dims ``(..., N)``.
  """
  batch, n = state.shape, state.num_objects
  agent_mask = _check('agent_mask', agent_mask, batch + (n,)).astype(bool)
  goal = _check('goal', goal, batch + (n, 2)).astype(jnp.float32)
  collided = _check('collided', collided, batch + (n,)).astype(bool)
  offroad = _check('offroad', offroad, batch + (n,)).astype(bool)
  goal_visible = _check('goal_visible', goal_visible, batch + (n,)).astype(bool)
  if road is None:
    road = prepare_road_points(state, config)
  if road.x.shape[:-1] != batch:
    raise ValueError(f'build_observation: road has batch shape {road.x.shape[:-1]}, '
                     f'expected {batch} (the state batch shape).')
  cur = state.current_sim_trajectory
  size = jnp.stack([cur.length[..., 0], cur.width[..., 0]], -1)
  speed = _speed(state, 0, config.token_speed_steps)
  tl = state.current_traffic_light
  motion = _ego_motion(state, speed, config)
  fn = lambda *args: _observe_single(*args, config)
  return map_leading_dims(fn, len(batch))(
      cur.x[..., 0], cur.y[..., 0], cur.yaw[..., 0], speed, size,
      state.object_metadata.object_types, cur.valid[..., 0], agent_mask, goal, collided,
      offroad, goal_visible, tl.x[..., 0], tl.y[..., 0], tl.state[..., 0],
      tl.lane_ids[..., 0], tl.valid[..., 0], motion, road)


def _speed(state: SimulatorState, back: int, window: int) -> jax.Array:
  """``(..., N)`` speed, m/s, ``back`` steps before ``state.timestep``: the mean over the
  ``window`` steps up to then (from positions, ``feasibility.last_token_speed``), or,
  with ``window`` 0 or where the pose ``window`` steps earlier is unknown, the
  velocity's norm there."""
  end = slice_time(state.sim_trajectory, jnp.maximum(jnp.asarray(state.timestep) - back, 0),
                   1)
  velocity = jnp.sqrt(end.vel_x[..., 0] ** 2 + end.vel_y[..., 0] ** 2)
  if not window:
    return velocity
  mean, known = last_token_speed(state, window, back)
  return jnp.where(known, mean, velocity)


def _ego_motion(state: SimulatorState, speed: jax.Array, config: ObservationConfig
                ) -> jax.Array:
  """``(..., N, MOTION_DIM)``: [history available, acceleration / ACCEL_SCALE, yaw rate
  / YAW_RATE_SCALE] over the last ``motion_lag_steps`` simulated steps, clipped to
  [-1, 1]; zeros where the earlier pose is unknown (or the features are off)."""
  batch, n = state.shape, state.num_objects
  lag = config.motion_lag_steps
  if not lag:
    return jnp.zeros(batch + (n, MOTION_DIM), jnp.float32)
  cur = state.current_sim_trajectory
  before = jnp.asarray(state.timestep) - lag
  prev = slice_time(state.sim_trajectory, jnp.maximum(before, 0), 1)
  known = prev.valid[..., 0] & cur.valid[..., 0] & (before >= 0)[..., None]
  dt = lag * TIMESTEP_SECONDS
  prev_speed = _speed(state, lag, config.token_speed_steps)
  turn = cur.yaw[..., 0] - prev.yaw[..., 0]
  dyaw = jnp.arctan2(jnp.sin(turn), jnp.cos(turn))  # Wrapped to (-pi, pi].
  feats = jnp.stack([jnp.ones_like(speed),
                     jnp.clip((speed - prev_speed) / dt / ACCEL_SCALE, -1.0, 1.0),
                     jnp.clip(dyaw / dt / YAW_RATE_SCALE, -1.0, 1.0)], -1)
  return jnp.where(known[..., None], feats, 0.0).astype(jnp.float32)
