"""Realism statistics of logged scenarios, per agent type, and a compact dataset summary.

:class:`RealismStats` holds distributions over every valid (object, step) of the logs
(``log_trajectory``), to compare a dataset with typical WOMD figures:

- ``speed`` m/s: ``|(vel_x, vel_y)|``.
- ``accel`` m/s^2, longitudinal: ``(v[t+1] - v[t]) / dt`` projected on the heading at t
  (a car turning at constant speed has 0), for steps valid at t and t+1.
- ``yaw_rate`` rad/s: ``wrap(yaw[t+1] - yaw[t]) / dt`` for the same pairs.
- ``gap`` m, bumper to bumper, to the leader: the nearest other valid object ahead
  (longitudinal offset > 0 in the follower's frame) whose centre is within
  ``LANE_HALF_WIDTH`` laterally and whose heading differs by less than
  ``SAME_DIRECTION`` (same lane, same direction), up to ``MAX_GAP`` ahead. Followers
  are vehicles and cyclists.
- ``time_headway`` s: ``gap / speed`` of followers faster than ``MOVING_SPEED``.
- ``road_edge_distance`` m: signed distance of the box centre to the nearest road edge
  (Waymax's off-road definition; negative = on the road side of the edge), computed
  with the road-edge index of :mod:`spacer_jax.sim.metrics.road_edges`.

:class:`DatasetSummary` is the small, mergeable (JSON) summary that the dataset writer
keeps per shard: scenario and object counts per type and speed histograms.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from spacer_jax.sim.datatypes import TIMESTEP_SECONDS, ObjectType, SimulatorState
from spacer_jax.sim.metrics import road_edges

TYPE_NAMES = {int(ObjectType.VEHICLE): 'vehicle', int(ObjectType.PEDESTRIAN): 'pedestrian',
              int(ObjectType.CYCLIST): 'cyclist'}
QUANTITIES = ('speed', 'accel', 'yaw_rate', 'gap', 'time_headway', 'road_edge_distance')
UNITS = {'speed': 'm/s', 'accel': 'm/s^2', 'yaw_rate': 'rad/s', 'gap': 'm',
         'time_headway': 's', 'road_edge_distance': 'm'}
PERCENTILES = (5, 25, 50, 75, 95)
LANE_HALF_WIDTH = 1.8  # m: a leader's centre this close laterally is in the same lane
SAME_DIRECTION = np.deg2rad(45.0)  # max heading difference to the leader
MAX_GAP = 100.0  # m: farther leaders do not count
MOVING_SPEED = 1.0  # m/s: time headway only for followers at least this fast
STATIONARY_SPEED = 0.5  # m/s: an object never faster than this is stationary
SPEED_BIN = 0.25  # m/s, DatasetSummary histogram resolution
SPEED_BINS = 200  # bins of the histogram; faster speeds land in the last bin


@dataclasses.dataclass(frozen=True)
class Distribution:
  """Summary of one sample: ``count``, ``mean`` and ``PERCENTILES`` (NaN when empty)."""

  count: int
  mean: float
  p5: float
  p25: float
  p50: float
  p75: float
  p95: float

  @classmethod
  def of(cls, values: np.ndarray) -> Distribution:
    values = np.asarray(values, np.float64).ravel()
    if values.size == 0:
      return cls(0, *([float('nan')] * (1 + len(PERCENTILES))))
    q = np.percentile(values, PERCENTILES)
    return cls(int(values.size), float(values.mean()), *(float(v) for v in q))


def _host(state: SimulatorState) -> SimulatorState:
  return jax.tree_util.tree_map(np.asarray, state)


def _batched(state: SimulatorState) -> SimulatorState:
  """Adds a batch axis to an unbatched state; collapses several batch axes into one."""
  n, t = state.log_trajectory.x.shape[-2:]
  lead = state.log_trajectory.x.shape[:-2]
  size = int(np.prod(lead))

  def reshape(x):
    x = np.asarray(x)
    return x.reshape((size,) + x.shape[len(lead):])

  return jax.tree_util.tree_map(reshape, state) if len(lead) != 1 else state


def kinematics(state: SimulatorState) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Per-step ``speed`` ``(B, N, T)``, ``accel`` and ``yaw_rate`` ``(B, N, T-1)``.

  Returns:
    name -> (values, valid) host arrays; ``state`` has one batch axis.
  """
  log = state.log_trajectory
  vx, vy, yaw = np.asarray(log.vel_x), np.asarray(log.vel_y), np.asarray(log.yaw)
  valid = np.asarray(log.valid)
  pair = valid[..., 1:] & valid[..., :-1]
  speed = np.hypot(vx, vy)
  dvx, dvy = np.diff(vx, axis=-1), np.diff(vy, axis=-1)
  head = yaw[..., :-1]
  accel = (dvx * np.cos(head) + dvy * np.sin(head)) / TIMESTEP_SECONDS
  dyaw = (np.diff(yaw, axis=-1) + np.pi) % (2 * np.pi) - np.pi
  return {'speed': (speed, valid), 'accel': (accel, pair),
          'yaw_rate': (dyaw / TIMESTEP_SECONDS, pair)}


def leader_gaps(state: SimulatorState) -> tuple[np.ndarray, np.ndarray]:
  """Bumper-to-bumper gap to the same-lane, same-direction leader (module docstring).

  Returns:
    (gap, valid), each ``(B, N, T)``; valid where the object is valid and has a leader
    within ``MAX_GAP``. ``state`` has one batch axis; scenarios are done one at a time
    to bound memory (the pairwise arrays are ``(N, N, T)``).
  """
  log = state.log_trajectory
  out = [_leader_gaps_single(*(np.asarray(a[b]) for a in (
      log.x, log.y, log.yaw, log.length, log.valid))) for b in range(log.x.shape[0])]
  return np.stack([g for g, _ in out]), np.stack([v for _, v in out])


def objects_ahead(x: np.ndarray, y: np.ndarray, yaw: np.ndarray, valid: np.ndarray,
                  max_gap: float = MAX_GAP, lane_half_width: float = LANE_HALF_WIDTH,
                  same_direction: float = SAME_DIRECTION) -> tuple[np.ndarray, np.ndarray]:
  """Which objects are ahead of which, in the same lane and direction.

  Args:
    x, y, yaw, valid: ``(N, T)`` poses (m, rad) and validity of one scenario.
    max_gap: farthest centre-to-centre distance ahead that counts, m.
    lane_half_width: largest lateral offset of the other's centre, m.
    same_direction: largest heading difference, rad.

  Returns:
    ``(lon, ahead)``, each ``(N, N, T)``: object j's longitudinal offset in object i's
    frame (m) and whether j is ahead of i in that sense (never i itself).
  """
  # Pairwise (follower i, other j) offsets in i's frame.
  dx, dy = x[None] - x[:, None], y[None] - y[:, None]
  c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
  lon, lat = c * dx + s * dy, -s * dx + c * dy
  dyaw = np.abs((yaw[None] - yaw[:, None] + np.pi) % (2 * np.pi) - np.pi)
  n = x.shape[0]
  ahead = (valid[:, None] & valid[None] & ~np.eye(n, dtype=bool)[..., None] & (lon > 0)
           & (np.abs(lat) < lane_half_width) & (dyaw < same_direction) & (lon <= max_gap))
  return lon, ahead


def _leader_gaps_single(x, y, yaw, length, valid):
  """:func:`leader_gaps` of one scenario; inputs ``(N, T)``."""
  lon, ahead = objects_ahead(x, y, yaw, valid)
  nearest = np.where(ahead, lon, np.inf).argmin(axis=1)  # (N, T)
  lead_lon = np.take_along_axis(lon, nearest[:, None], axis=1)[:, 0]
  lead_len = length[nearest, np.arange(x.shape[1])[None, :]]
  gap = lead_lon - 0.5 * (length + lead_len)
  has = ahead.any(axis=1)
  return np.where(has, gap, 0.0).astype(np.float32), has


@jax.jit
def _edge_distance(x, y, z, roadgraph):
  """Signed road-edge distance of points ``(Q,)`` of one scenario (index built here)."""
  index = road_edges.build_road_edge_index(roadgraph)
  query = jnp.stack([x, y, z], axis=-1)
  d = road_edges.signed_distance_to_road_edge(query, roadgraph, index)
  return d.distance, d.valid


def road_edge_distances(state: SimulatorState) -> tuple[np.ndarray, np.ndarray]:
  """Signed distance of every box centre to the road edge: (value, valid) ``(B, N, T)``.

  One compiled call per scenario (the index build of a whole batch at once would need
  ``B x`` its memory).
  """
  log = state.log_trajectory
  b, n, t = log.x.shape
  dist = np.zeros((b, n, t), np.float32)
  ok = np.zeros((b, n, t), bool)
  for i in range(b):
    rg = jax.tree_util.tree_map(lambda a, i=i: a[i], state.roadgraph_points)
    d, v = _edge_distance(log.x[i].ravel(), log.y[i].ravel(), log.z[i].ravel(), rg)
    dist[i], ok[i] = np.asarray(d).reshape(n, t), np.asarray(v).reshape(n, t)
  return dist, ok & np.asarray(log.valid)


@dataclasses.dataclass
class RealismStats:
  """Distributions per quantity and agent type name, and counts.

  Attributes:
    distributions: quantity (``QUANTITIES``) -> type name -> :class:`Distribution`.
    stationary_fraction: type name -> fraction of valid objects never faster than
      ``STATIONARY_SPEED``.
    num_objects: type name -> valid objects.
    num_scenarios: scenarios seen.
  """

  distributions: dict[str, dict[str, Distribution]]
  stationary_fraction: dict[str, float]
  num_objects: dict[str, int]
  num_scenarios: int

  def to_json(self) -> dict:
    return {'num_scenarios': self.num_scenarios, 'num_objects': self.num_objects,
            'stationary_fraction': self.stationary_fraction,
            'distributions': {q: {k: dataclasses.asdict(v) for k, v in d.items()}
                              for q, d in self.distributions.items()}}

  def table(self) -> str:
    """A fixed-width text table: one row per quantity and type."""
    head = (f'{"quantity":<24}{"type":<11}{"count":>9}{"mean":>9}'
            + ''.join(f'{"p" + str(p):>9}' for p in PERCENTILES))
    lines = [head, '-' * len(head)]
    for q in QUANTITIES:
      for name, d in self.distributions[q].items():
        if d.count == 0:
          continue  # e.g. gaps of pedestrians
        vals = [d.mean, d.p5, d.p25, d.p50, d.p75, d.p95]
        lines.append(f'{q + " [" + UNITS[q] + "]":<24}{name:<11}{d.count:>9}'
                     + ''.join(f'{v:>9.2f}' for v in vals))
    fractions = ', '.join(f'{k} {v:.1%}' for k, v in self.stationary_fraction.items()
                          if self.num_objects.get(k))
    lines.append(f'stationary objects (never above {STATIONARY_SPEED} m/s): {fractions}')
    lines.append(f'{self.num_scenarios} scenarios; valid objects: '
                 + ', '.join(f'{k} {v}' for k, v in self.num_objects.items()))
    return '\n'.join(lines)


class RealismAccumulator:
  """Collects samples batch by batch; :meth:`result` summarises them."""

  def __init__(self):
    self._samples = {q: {k: [] for k in TYPE_NAMES.values()} for q in QUANTITIES}
    self._objects = dict.fromkeys(TYPE_NAMES.values(), 0)
    self._stationary = dict.fromkeys(TYPE_NAMES.values(), 0)
    self.num_scenarios = 0

  def add(self, states: SimulatorState) -> None:
    """Adds a state: unbatched or with any batch shape (leaves ``(..., N, T)``)."""
    state = _batched(_host(states))
    values = kinematics(state)
    speed, speed_valid = values['speed']
    gap, gap_valid = leader_gaps(state)
    values['gap'] = (gap, gap_valid)
    moving = speed_valid & (speed >= MOVING_SPEED)
    values['time_headway'] = (np.where(moving, gap / np.maximum(speed, MOVING_SPEED), 0.0),
                              gap_valid & moving)
    values['road_edge_distance'] = road_edge_distances(state)
    types = np.asarray(state.object_metadata.object_types)  # (B, N)
    obj_valid = speed_valid.any(-1)
    stationary = obj_valid & (np.where(speed_valid, speed, 0.0).max(-1) < STATIONARY_SPEED)
    for code, name in TYPE_NAMES.items():
      of_type = (types == code)[..., None]
      self._objects[name] += int((obj_valid & of_type[..., 0]).sum())
      self._stationary[name] += int((stationary & of_type[..., 0]).sum())
      for q in QUANTITIES:
        if q in ('gap', 'time_headway') and code == ObjectType.PEDESTRIAN:
          continue  # pedestrians do not follow lanes
        v, ok = values[q]
        self._samples[q][name].append(v[ok & of_type].astype(np.float32))
    self.num_scenarios += state.log_trajectory.x.shape[0]

  def result(self) -> RealismStats:
    dists = {q: {k: Distribution.of(np.concatenate(v) if v else np.zeros(0))
                 for k, v in per_type.items()} for q, per_type in self._samples.items()}
    frac = {k: (self._stationary[k] / n if n else float('nan'))
            for k, n in self._objects.items()}
    return RealismStats(dists, frac, dict(self._objects), self.num_scenarios)


def realism_stats(states: Iterable[SimulatorState]) -> RealismStats:
  """:class:`RealismStats` over an iterable of (batched or unbatched) states."""
  acc = RealismAccumulator()
  for s in states:
    acc.add(s)
  return acc.result()


# -- the dataset writer's summary ---------------------------------------------------


@dataclasses.dataclass
class DatasetSummary:
  """Counts and speed histograms of written scenarios; merges across shards (JSON).

  Attributes:
    num_scenarios: scenarios.
    valid_objects: type name -> objects with at least one valid step.
    speed_histogram: type name -> counts of valid-step speeds in ``SPEED_BIN`` m/s bins
      (``SPEED_BINS`` of them; the last one also holds faster speeds).
  """

  num_scenarios: int = 0
  valid_objects: dict[str, int] = dataclasses.field(
      default_factory=lambda: dict.fromkeys(TYPE_NAMES.values(), 0))
  speed_histogram: dict[str, list[int]] = dataclasses.field(
      default_factory=lambda: {k: [0] * SPEED_BINS for k in TYPE_NAMES.values()})

  @classmethod
  def of_state(cls, state: SimulatorState) -> DatasetSummary:
    """The summary of one state (unbatched or batched)."""
    state = _batched(_host(state))
    speed, valid = kinematics(state)['speed']
    types = np.asarray(state.object_metadata.object_types)
    out = cls(num_scenarios=int(types.shape[0]))
    bins = np.minimum((speed / SPEED_BIN).astype(np.int64), SPEED_BINS - 1)
    for code, name in TYPE_NAMES.items():
      of_type = types == code
      out.valid_objects[name] = int((valid.any(-1) & of_type).sum())
      hist = np.bincount(bins[valid & of_type[..., None]], minlength=SPEED_BINS)
      out.speed_histogram[name] = [int(c) for c in hist]
    return out

  def merge(self, other: DatasetSummary) -> DatasetSummary:
    """The summary of both (a new object)."""
    return DatasetSummary(
        num_scenarios=self.num_scenarios + other.num_scenarios,
        valid_objects={k: self.valid_objects.get(k, 0) + other.valid_objects.get(k, 0)
                       for k in TYPE_NAMES.values()},
        speed_histogram={k: [a + b for a, b in zip(self.speed_histogram[k],
                                                   other.speed_histogram[k])]
                         for k in TYPE_NAMES.values()})

  @property
  def mean_valid_objects(self) -> float:
    return sum(self.valid_objects.values()) / max(self.num_scenarios, 1)

  def speed_percentiles(self, type_name: str) -> dict[str, float]:
    """``p5 ... p95`` of the valid-step speeds (bin centres, m/s; NaN when empty)."""
    hist = np.asarray(self.speed_histogram[type_name], np.float64)
    total = hist.sum()
    if total == 0:
      return {f'p{p}': float('nan') for p in PERCENTILES}
    cdf = np.cumsum(hist) / total
    return {f'p{p}': float((np.searchsorted(cdf, p / 100.0) + 0.5) * SPEED_BIN)
            for p in PERCENTILES}

  def to_json(self) -> dict:
    # Trailing empty bins are dropped to keep manifests small.
    def trim(h):
      nz = np.flatnonzero(h)
      return list(h[:nz[-1] + 1]) if len(nz) else []
    return {'num_scenarios': self.num_scenarios, 'valid_objects': dict(self.valid_objects),
            'speed_histogram': {k: trim(v) for k, v in self.speed_histogram.items()}}

  @classmethod
  def from_json(cls, data: Mapping) -> DatasetSummary:
    hist = {k: list(v) + [0] * (SPEED_BINS - len(v))
            for k, v in data['speed_histogram'].items()}
    return cls(num_scenarios=int(data['num_scenarios']),
               valid_objects={k: int(v) for k, v in data['valid_objects'].items()},
               speed_histogram=hist)

  def table(self, title: Optional[str] = None) -> str:
    """Text lines: counts, mean valid objects, speed percentiles per type."""
    lines = [] if title is None else [title]
    lines.append(f'scenarios: {self.num_scenarios}; mean valid objects per scenario: '
                 f'{self.mean_valid_objects:.1f}')
    lines.append(f'{"type":<11}{"objects":>9}  speed m/s: '
                 + ' '.join(f'{"p" + str(p):>6}' for p in PERCENTILES))
    for name, count in self.valid_objects.items():
      pct = self.speed_percentiles(name)
      lines.append(f'{name:<11}{count:>9}  {"":10} '
                   + ' '.join(f'{pct[f"p{p}"]:>6.2f}' for p in PERCENTILES))
    return '\n'.join(lines)
