"""The k-disk vocabulary builder (host side: numpy plus small jitted distance kernels).

Segments of ``S + 1`` logged steps are cut from every valid agent track and expressed in
the agent's frame at their first step; two segments are compared by the mean distance
of their box corners over the S sub-steps (metres, with the type's median box).

Tokenisation rolls forward from the reconstructed pose (see ``tokenize``), so a token
is matched from a start that is slightly off the log. Two additions to the logged
segments make the vocabulary able to correct that instead of drifting:

* *start jitter*: a fraction of the segments is also seen from a start pose perturbed by
  a few centimetres and about a degree (the motion a reconstruction needs to rejoin the
  log);
* *kinematic primitives*: a grid of constant-acceleration, constant-yaw-rate motions
  within the type's plausible envelope, so speeds and turns the build logs happen to
  miss are still covered (and a type with almost no logged segments still gets a
  vocabulary).

Distances while clustering use a box ``cluster_length_scale`` (2) times the type's
median length, which weighs heading errors like position errors: a heading error is
barely visible within one 0.2 s token but moves every later token of a rolling
tokeniser.

k-disk (SMART): token 0 is standing still; then the candidate that covers the most
not-yet-covered points within the tolerance becomes a token and everything it covers
is removed; once no candidate covers anything new, the uncovered point farthest from
every token is taken. The tolerance is the smallest (found by bisection) with which
``K`` tokens cover ``coverage`` of the points, so the tails that make a rolling
tokeniser drift are covered too; tokens left over are spent farthest-first.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spacer_jax.sim.datatypes import TIMESTEP_SECONDS, SimulatorState
from spacer_jax.tokens.vocabulary import (
    DEFAULT_BOX_SIZES,
    DEFAULT_NUM_TOKENS,
    DEFAULT_STEPS_PER_TOKEN,
    FORMAT_VERSION,
    NUM_AGENT_TYPES,
    TYPE_NAMES,
    TokenVocabulary,
    agent_type_index,
)


@dataclasses.dataclass(frozen=True)
class BuildConfig:
  """Settings of the k-disk builder.

  Attributes:
    num_tokens: K tokens per type, token 0 included.
    steps_per_token: S simulator steps (0.1 s each) per token.
    max_segments: logged segments sampled per type.
    max_candidates: at least this many points may become tokens by max coverage (the
      builder uses ``max(max_candidates, 3 K)``); the distance table is ``candidates x
      points`` float16.
    jitter_fraction: jittered copies added, as a fraction of the sampled segments.
    jitter_xy: std of the start-position jitter, metres.
    jitter_yaw: std of the start-heading jitter, radians.
    primitives: always add the type's kinematic primitives to the points.
    min_segments: a type with fewer logged segments is flagged in the metadata as
      built mostly from primitives (primitives are added then even if ``primitives``
      is False).
    coverage: fraction of the points the K tokens must cover within the tolerance.
    cluster_length_scale: clustering compares boxes this many times the type's median
      length, so heading differences (which a rolling tokeniser pays for in every
      later token) weigh as much as position ones; tokenisation itself uses the real
      boxes.
    mirror_symmetric: make every type's vocabulary its own mirror image (left <-> right:
      y and yaw negated). Segments are folded onto one side, clustered, and every
      token is added with its mirror, except tokens within half the tolerance of their
      own mirror, which are straightened onto the axis (y = yaw = 0). Without it the
      near-straight tokens k-disk happens to pick carry a small turn, and an agent that
      repeats the most likely token drifts to one side.
    seed: sampling seed; the build is a deterministic function of data and config.
  """

  num_tokens: int = DEFAULT_NUM_TOKENS
  steps_per_token: int = DEFAULT_STEPS_PER_TOKEN
  max_segments: int = 12_000
  max_candidates: int = 1_000
  jitter_fraction: float = 0.5
  jitter_xy: float = 0.1
  jitter_yaw: float = 0.02
  primitives: bool = True
  min_segments: int = 1_000
  coverage: float = 1.0
  cluster_length_scale: float = 2.0
  mirror_symmetric: bool = True
  seed: int = 0

  def __post_init__(self):
    if self.num_tokens < 2:
      raise ValueError(f'BuildConfig.num_tokens must be >= 2, got {self.num_tokens}.')
    if self.steps_per_token < 1:
      raise ValueError(f'BuildConfig.steps_per_token must be >= 1, got '
                       f'{self.steps_per_token}.')
    if self.cluster_length_scale <= 0:
      raise ValueError('BuildConfig.cluster_length_scale must be positive, got '
                       f'{self.cluster_length_scale}.')
    if not 0 < self.coverage <= 1:
      raise ValueError(f'BuildConfig.coverage must be in (0, 1], got {self.coverage}.')
    for name in ('jitter_fraction', 'jitter_xy', 'jitter_yaw'):
      if getattr(self, name) < 0:
        raise ValueError(f'BuildConfig.{name} must be >= 0, got {getattr(self, name)}.')


# -- segments ----------------------------------------------------------------------


@dataclasses.dataclass
class Segments:
  """Host-side motion segments of one agent type.

  Attributes:
    poses: ``(n, S, 3)`` float32 local (x m, y m, yaw rad) of the S steps after the
      start, in the agent's frame at the start.
    length, width: ``(n,)`` float32 box size of the agent each segment comes from.
  """

  poses: np.ndarray
  length: np.ndarray
  width: np.ndarray


def _wrap(angle: np.ndarray) -> np.ndarray:
  return (angle + np.pi) % (2 * np.pi) - np.pi


def corners_np(poses: np.ndarray, length: Any, width: Any) -> np.ndarray:
  """Box corners ``(..., 4, 2)`` of poses ``(..., 3)``; sizes broadcast to ``(...)``.

  Same order as ``geometry.box_corners`` (front-right, then counter-clockwise); numpy,
  so host-side building never compiles per shape.
  """
  poses = np.asarray(poses, np.float32)
  half_l = np.asarray(length, np.float32)[..., None] / 2
  half_w = np.asarray(width, np.float32)[..., None] / 2
  ox, oy = np.array([1, 1, -1, -1]) * half_l, np.array([-1, 1, 1, -1]) * half_w
  c, s = np.cos(poses[..., 2:3]), np.sin(poses[..., 2:3])
  return np.stack([poses[..., 0:1] + c * ox - s * oy, poses[..., 1:2] + s * ox + c * oy], -1)


def _relative(poses: np.ndarray, origin: np.ndarray) -> np.ndarray:
  """Poses ``(..., S, 3)`` expressed in the frame of ``origin`` ``(..., 3)``."""
  d = poses[..., :2] - origin[..., None, :2]
  c, s = np.cos(origin[..., None, 2]), np.sin(origin[..., None, 2])
  return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1],
                   _wrap(poses[..., 2] - origin[..., None, 2])], -1)


def extract_segments(states: Iterable[SimulatorState], steps_per_token: int
                     ) -> list[Segments]:
  """Cuts every fully valid window of ``S + 1`` logged steps (any start step).

  Args:
    states: scenarios, batched or not (leading batch dimensions are flattened).
    steps_per_token: S.

  Returns:
    One :class:`Segments` per agent type (vehicle, pedestrian, cyclist).
  """
  s = steps_per_token
  parts: list[list[tuple[np.ndarray, ...]]] = [[] for _ in TYPE_NAMES]
  for state in states:
    log = state.log_trajectory
    t = log.num_timesteps
    if t < s + 1:
      raise ValueError(f'log has {t} steps, fewer than steps_per_token + 1 = {s + 1}.')
    get = lambda a, t=t: np.asarray(a).reshape(-1, t)
    pose = np.stack([get(log.x), get(log.y), get(log.yaw)], -1)  # (N, T, 3)
    valid, length, width = get(log.valid), get(log.length), get(log.width)
    types = np.asarray(agent_type_index(state.object_metadata.object_types)).reshape(-1)
    real = np.asarray(state.object_metadata.is_valid).reshape(-1)
    window = np.arange(t - s)[:, None] + np.arange(s + 1)  # (W, S + 1)
    obj, w = np.nonzero(valid[:, window].all(-1) & real[:, None])
    idx = window[w]  # (n, S + 1)
    local = _relative(pose[obj[:, None], idx[:, 1:]], pose[obj, idx[:, 0]])
    for k in range(NUM_AGENT_TYPES):
      sel = types[obj] == k
      parts[k].append((local[sel], length[obj[sel], idx[sel, 0]], width[obj[sel], idx[sel, 0]]))
  out = []
  for k in range(NUM_AGENT_TYPES):
    arrays = [np.concatenate(p) for p in zip(*parts[k])] if parts[k] else [
        np.zeros((0, s, 3)), np.zeros(0), np.zeros(0)]
    out.append(Segments(*(a.astype(np.float32) for a in arrays)))
  return out


@dataclasses.dataclass(frozen=True)
class _Envelope:
  """Grid of kinematic primitives of one type (m/s, m/s^2, rad/s)."""

  speeds: tuple[float, float, int]  # linspace(min, max, count); negative = reversing.
  accels: tuple[float, ...]
  max_yaw_rate: float
  yaw_rates: int  # Count of a symmetric linspace.
  max_lateral_accel: float  # Keep |speed * yaw_rate| below this.
  directions: int  # Directions of motion relative to the heading (1: straight ahead).


# Wider than typical logs (freeway vehicles up to 35 m/s, reversing, jogging pedestrians
# moving in any direction relative to their heading, fast cyclists): a rolling tokeniser
# without a fast enough token falls behind for good.
_ENVELOPES = (
    _Envelope((-5.0, 35.0, 41), (-5.0, 0.0, 3.0), 0.8, 21, 5.0, 1),
    _Envelope((0.0, 4.0, 17), (-1.5, 0.0, 1.5), 2.0, 11, 4.0, 8),
    _Envelope((0.0, 15.0, 31), (-3.0, 0.0, 2.0), 1.0, 21, 4.0, 1),
)


def kinematic_primitives(type_index: int, steps_per_token: int) -> np.ndarray:
  """Constant-acceleration, constant-yaw-rate motions ``(n, S, 3)`` of one type.

  A grid over speed, acceleration, yaw rate and direction of motion relative to the
  heading (pedestrians move sideways too) within the type's envelope, keeping
  combinations whose lateral acceleration ``speed * yaw_rate`` is plausible; distinct
  motions only, standing still excluded.
  """
  env = _ENVELOPES[type_index]
  w_max = env.max_yaw_rate
  grid = np.meshgrid(np.linspace(*env.speeds[:2], env.speeds[2]), np.asarray(env.accels),
                     np.linspace(-w_max, w_max, env.yaw_rates),
                     np.arange(env.directions) * 2 * np.pi / env.directions, indexing='ij')
  keep = np.abs(grid[0] * grid[2]) <= env.max_lateral_accel
  v0, a, w, phi = (g[keep][:, None] for g in grid)
  dt = TIMESTEP_SECONDS
  x, y, poses = np.zeros_like(v0), np.zeros_like(v0), []
  for step in range(1, steps_per_token + 1):
    t_mid = (step - 0.5) * dt  # Midpoint integration of each 0.1 s sub-step.
    v, heading = v0 + a * t_mid, w * t_mid + phi
    x, y = x + v * np.cos(heading) * dt, y + v * np.sin(heading) * dt
    poses.append(np.concatenate([x, y, w * step * dt], -1))
  poses = np.stack(poses, 1).astype(np.float32)
  # Directions of a zero speed coincide, and standing still is token 0 already.
  flat = np.round(poses.reshape(len(poses), -1), 5)
  first = np.sort(np.unique(flat, axis=0, return_index=True)[1])
  return poses[first[np.abs(flat[first]).max(-1) > 0]]


def jitter_starts(poses: np.ndarray, rng: np.random.Generator, xy: float, yaw: float
                  ) -> np.ndarray:
  """The same motions seen from start poses perturbed by N(0, xy) m and N(0, yaw) rad."""
  scale = np.array([xy, xy, yaw], np.float32)
  origin = rng.normal(size=(len(poses), 3)).astype(np.float32) * scale
  return _relative(poses, origin).astype(np.float32)


# -- k-disk ------------------------------------------------------------------------


@jax.jit
def _pairwise_distance(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean corner distance ``(m, n)`` float16 of corner sets ``(m, C, 2)``, ``(n, C, 2)``."""
  one = lambda ai: jnp.mean(jnp.linalg.norm(ai[None] - b, axis=-1), -1).astype(jnp.float16)
  return jax.lax.map(one, a, batch_size=32)


@jax.jit
def _distance_to(corners: jax.Array, i: jax.Array) -> jax.Array:
  """Mean corner distance ``(n,)`` of every point to point ``i``."""
  return jnp.mean(jnp.linalg.norm(corners - corners[i], axis=-1), -1)


@functools.partial(jax.jit, static_argnums=2)
def _farthest_points(corners: jax.Array, nearest: jax.Array, num: int) -> jax.Array:
  """Farthest-point traversal: ``num`` point indices, each the farthest from the
  points chosen before it (and from whatever ``nearest`` ``(n,)`` already measures)."""
  def body(i, carry):
    chosen, nearest = carry
    j = jnp.argmax(nearest)
    return chosen.at[i].set(j), jnp.minimum(nearest, _distance_to(corners, j))
  init = (jnp.zeros(num, jnp.int32), nearest)
  return jax.lax.fori_loop(0, num, body, init)[0]


@dataclasses.dataclass
class _Table:
  """Distances of one type's points; candidates are points ``0..m-1``."""

  corners: np.ndarray  # (n, C, 2)
  dist: np.ndarray  # (m, n) float16
  dist_t: np.ndarray  # (n, m) float16, contiguous, for row gathers
  still: np.ndarray  # (n,) distance to the standing-still token

  def row(self, i: int) -> np.ndarray:
    """Distances ``(n,)`` of point ``i`` to every point."""
    if i < len(self.dist):
      return self.dist[i].astype(np.float32)
    if not hasattr(self, '_device_corners'):
      self._device_corners = jnp.asarray(self.corners)
    return np.asarray(_distance_to(self._device_corners, i))


def _kdisk(table: _Table, num_new: int, tol: float) -> tuple[list[int], np.ndarray]:
  """Token point indices (token 0 excluded) and each point's distance to its token."""
  within = table.dist <= tol
  within_t = table.dist_t <= tol
  m = len(within)
  nearest = table.still.copy()
  covered = nearest <= tol
  counts = within_t[~covered].sum(0, dtype=np.int64)
  picks: list[int] = []
  while len(picks) < num_new:
    scores = np.where(covered[:m], -1, counts)
    c = int(np.argmax(scores))
    if scores[c] <= 0:
      break
    newly = np.nonzero(within[c] & ~covered)[0]
    counts -= within_t[newly].sum(0, dtype=np.int64)
    covered[newly] = True
    nearest = np.minimum(nearest, table.dist[c].astype(np.float32))
    picks.append(c)
  # Points no candidate covers, then spare tokens: farthest point first.
  while len(picks) < num_new:
    c = int(np.argmax(nearest))
    if nearest[c] <= 0:
      break
    picks.append(c)
    nearest = np.minimum(nearest, table.row(c))
  return picks, nearest


# A mirror-symmetric build straightens a pick only when its mirror is this close
# (fraction of the covering tolerance): looser, and gentle turns vanish from small
# vocabularies; tighter, and slots go to near-duplicate pairs around the axis.
AXIAL_FRACTION = 0.5


def mirror_poses(poses: np.ndarray) -> np.ndarray:
  """Left-right mirror images of local poses ``(..., 3)``: y and yaw negated."""
  return (np.asarray(poses) * np.array([1.0, -1.0, -1.0], np.float32)).astype(np.float32)


def _nearest(table: _Table, picks: list[int]) -> np.ndarray:
  """Each point's distance to the nearest of token 0 and the picked points."""
  nearest = table.still.copy()
  for c in picks:
    nearest = np.minimum(nearest, table.row(c))
  return nearest


def _symmetric_picks(picks: list[int], self_distance: np.ndarray, tol: float,
                     budget: int) -> tuple[list[int], np.ndarray]:
  """The longest prefix of ``picks`` (in k-disk order) whose tokens, mirrors included,
  fill ``budget`` slots: a pick within ``AXIAL_FRACTION * tol`` of its mirror takes one
  slot (it is straightened), any other two. A two-slot pick that no longer fits is skipped; if one
  slot stays empty it is straightened into it. Returns the picks and which of them are
  axial (one slot)."""
  chosen, axial, count, skipped = [], [], 0, []
  for c in picks:
    cost = 1 if self_distance[c] <= AXIAL_FRACTION * tol else 2
    if count + cost > budget:
      skipped.append(c)
      continue
    chosen.append(c)
    axial.append(cost == 1)
    count += cost
    if count == budget:
      break
  for c in skipped[:budget - count]:
    chosen.append(c)
    axial.append(True)
    count += 1
  if count != budget:
    raise ValueError(f'k-disk found only {count} of {budget} mirror-symmetric token slots; '
                     'use more data or fewer tokens.')
  return chosen, np.asarray(axial, bool)


def _cluster_type(points: np.ndarray, num_logged: int, box: np.ndarray, num_tokens: int,
                  num_candidates: int, coverage: float, mirror_symmetric: bool = False
                  ) -> tuple[np.ndarray, dict[str, float]]:
  """K token poses ``(K, S, 3)`` for one type from points ``(n, S, 3)``.

  Distances use ``box`` (length, width). ``points[:num_logged]`` are logged segments:
  the reported quantisation error is their mean distance to the nearest token. With
  ``mirror_symmetric`` the points are folded onto their left side first and the tokens
  come out closed under mirroring (see ``BuildConfig.mirror_symmetric``).
  """
  n, s = points.shape[:2]
  original = points
  if mirror_symmetric:
    right = (points[:, :, 1].sum(-1) + points[:, :, 2].sum(-1)) < 0
    points = np.where(right[:, None, None], mirror_poses(points), points)
  corners = corners_np(points, box[0], box[1]).reshape(n, 4 * s, 2)
  still = np.linalg.norm(corners - np.tile(corners_np(np.zeros(3), box[0], box[1]), (s, 1)),
                         axis=-1).mean(-1).astype(np.float32)
  # Candidates: a farthest-point sample, so that sparse regions (fast, turning, jittered
  # motions) have candidates too; max coverage then favours the dense ones.
  cand = np.asarray(_farthest_points(jnp.asarray(corners), jnp.asarray(still),
                                     min(n, num_candidates)))
  cand = cand[np.sort(np.unique(cand, return_index=True)[1])]  # Repeats once all is 0 away.
  m = len(cand)
  rest = np.setdiff1d(np.arange(n), cand)
  order = np.concatenate([cand, rest])
  points, corners, still = points[order], corners[order], still[order]
  dist = np.asarray(_pairwise_distance(jnp.asarray(corners[:m]), jnp.asarray(corners)))
  table = _Table(corners, dist, np.ascontiguousarray(dist.T), still)
  budget = num_tokens - 1
  if mirror_symmetric:
    mirrored = corners_np(mirror_poses(points), box[0], box[1]).reshape(n, 4 * s, 2)
    self_distance = np.linalg.norm(corners - mirrored, axis=-1).mean(-1)

    def select(tol):
      picks, _ = _kdisk(table, budget, tol)
      chosen, axial = _symmetric_picks(picks, self_distance, tol, budget)
      return chosen, axial, _nearest(table, chosen)
  else:
    def select(tol):
      picks, nearest = _kdisk(table, budget, tol)
      return picks, np.zeros(len(picks), bool), nearest

  covers = lambda tol: np.mean(select(tol)[2] <= tol) >= coverage
  # Bracket the smallest covering tolerance within a factor 2, then bisect in log space.
  hi = 0.1
  while not covers(hi):
    hi *= 2
  lo = hi / 2
  while covers(lo) and lo > 1e-3:
    lo, hi = lo / 2, lo
  for _ in range(6):  # Within 2^(1/64), about 1%, of the smallest covering tolerance.
    mid = float(np.sqrt(lo * hi))
    lo, hi = (lo, mid) if covers(mid) else (mid, hi)
  picks, axial, nearest = select(hi)
  chosen = points[picks]
  if mirror_symmetric:
    straight = chosen * np.array([1.0, 0.0, 0.0], np.float32)
    chosen = np.concatenate([np.where(axial[:, None, None], straight, chosen),
                             mirror_poses(chosen[~axial])])
  tokens = np.concatenate([np.zeros((1, s, 3), np.float32), chosen.astype(np.float32)])
  stats = {'tolerance_m': float(hi)}
  if mirror_symmetric:
    # Measured against the final (mirrored, straightened) tokens, on the unfolded data.
    token_corners_ = corners_np(tokens, box[0], box[1]).reshape(len(tokens), 4 * s, 2)
    point_corners = corners_np(original, box[0], box[1]).reshape(n, 4 * s, 2)
    nearest_all = np.asarray(_pairwise_distance(jnp.asarray(point_corners),
                                                jnp.asarray(token_corners_))).min(-1)
    nearest_all = nearest_all.astype(np.float32)
    logged = nearest_all[:num_logged]
    stats.update(max_quantization_error_m=float(nearest_all.max()),
                 num_axial_tokens=int(axial.sum()))
  else:
    logged = nearest[order < num_logged]
    stats['max_quantization_error_m'] = float(nearest.max())
  stats['quantization_error_m'] = float(logged.mean()) if len(logged) else 0.0
  return tokens, stats


def build_vocabulary(segments: Sequence[Segments], config: BuildConfig = BuildConfig(),
                     source: dict[str, Any] | None = None
                     ) -> tuple[TokenVocabulary, dict[str, Any]]:
  """k-disk clustering of segments per type into a :class:`TokenVocabulary`.

  Args:
    segments: one :class:`Segments` per type (vehicle, pedestrian, cyclist), with
      ``S = config.steps_per_token`` steps.
    config: builder settings.
    source: JSON-serialisable description of the data (stored in the metadata).

  Returns:
    ``(vocabulary, metadata)``; metadata holds the format version, K, S, per type the
    box size, segment / jitter / primitive counts, the tolerance and the quantisation
    error of the logged build segments (both measured with the clustering box
    ``cluster_box_size_m``), the build config and the source.
  """
  start = time.perf_counter()
  if len(segments) != NUM_AGENT_TYPES:
    raise ValueError(f'expected {NUM_AGENT_TYPES} segment sets, got {len(segments)}.')
  s, k_tokens = config.steps_per_token, config.num_tokens
  poses, boxes, per_type = [], [], []
  for k, seg in enumerate(segments):
    if seg.poses.ndim != 3 or seg.poses.shape[1:] != (s, 3):
      raise ValueError(f'segments[{k}].poses has shape {seg.poses.shape}, expected '
                       f'(n, {s}, 3).')
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, k]))
    logged = seg.poses[rng.permutation(len(seg.poses))[:config.max_segments]]
    box = (np.array([np.median(seg.length), np.median(seg.width)], np.float32)
           if len(seg.poses) else np.asarray(DEFAULT_BOX_SIZES[k], np.float32))
    sparse = len(seg.poses) < config.min_segments
    num_jitter = int(round(config.jitter_fraction * len(logged)))
    jittered = jitter_starts(logged[rng.integers(0, max(len(logged), 1), num_jitter)], rng,
                             config.jitter_xy, config.jitter_yaw) if num_jitter else logged[:0]
    prims = (kinematic_primitives(k, s) if config.primitives or sparse
             else np.zeros((0, s, 3), np.float32))
    points = np.concatenate([logged, jittered, prims])
    if len(points) < k_tokens:
      raise ValueError(f'{TYPE_NAMES[k]}: only {len(points)} segments for {k_tokens} tokens; '
                       'use more data or fewer tokens.')
    cluster_box = box * np.array([config.cluster_length_scale, 1.0], np.float32)
    token_poses, stats = _cluster_type(points, len(logged), cluster_box, k_tokens,
                                       max(config.max_candidates, 3 * k_tokens),
                                       config.coverage, config.mirror_symmetric)
    poses.append(token_poses)
    boxes.append(box)
    per_type.append({
        'type': TYPE_NAMES[k], 'num_tokens': k_tokens,
        'box_size_m': [float(b) for b in box],
        'cluster_box_size_m': [float(b) for b in cluster_box],
        'num_segments': int(len(seg.poses)),
        'num_sampled_segments': int(len(logged)), 'num_jittered_segments': num_jitter,
        'num_primitive_segments': int(len(prims)), 'mostly_primitives': bool(sparse),
        **stats})
  vocab = TokenVocabulary.from_poses(np.stack(poses), np.stack(boxes))
  metadata = {
      'format_version': FORMAT_VERSION, 'num_tokens': k_tokens, 'steps_per_token': s,
      'token_seconds': round(s * TIMESTEP_SECONDS, 6), 'types': per_type,
      'build_config': dataclasses.asdict(config), 'source': source or {},
      'build_seconds': time.perf_counter() - start,
  }
  return vocab, metadata


def describe_seeds(seeds: list[int]) -> Any:
  """``{'first', 'count'}`` for a consecutive range, else the list."""
  if seeds and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
    return {'first': seeds[0], 'count': len(seeds)}
  return seeds


def jsonable(value: Any) -> Any:
  """A JSON round trip (tuples become lists, unknown objects strings)."""
  return json.loads(json.dumps(value, default=str))


def primitive_vocabulary(num_tokens: int, steps_per_token: int = 2) -> TokenVocabulary:
  """Token 0 standing still plus ``num_tokens - 1`` evenly picked kinematic primitives
  per type (no clustering, no data): for tests and speed measurements, whose results do
  not depend on the tokens' content."""
  poses = []
  for t in range(NUM_AGENT_TYPES):
    prim = kinematic_primitives(t, steps_per_token)
    pick = np.linspace(0, len(prim) - 1, num_tokens - 1).astype(int)
    still = np.zeros((1, steps_per_token, 3), np.float32)
    poses.append(np.concatenate([still, prim[pick]], 0))
  return TokenVocabulary.from_poses(np.stack(poses), DEFAULT_BOX_SIZES)

