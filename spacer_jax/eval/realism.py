"""WOSAC realism metrics of simulated rollouts against the logged future, in JAX.

``compute_realism(log_state, rollouts)`` scores R joint rollouts (32 in the challenge)
of every scenario of a batch, jitted and vmapped, the way the official evaluator does:

* **Who.** Simulated agents are the objects valid at the current step (index 10); they
  all take part in the interaction features. Evaluated agents are the SDC plus the
  ``tracks_to_predict`` (``ObjectMetadata.is_modeled``, set by both WOMD readers) among
  them, at most ``RealismOptions.max_evaluated_objects``. Objects not valid at the
  current step are not in the rollouts: they are never partners (no collision,
  nearest-object distance or TTC with them), in the log scene either.
* **Trajectories.** Each rollout (and the log itself) becomes a 91-step scene: the
  logged history (steps 0-10, invalid entries read as 0 like WOMD's Scenario protos)
  followed by the 80 simulated steps, every simulated agent valid throughout (the log
  scene keeps the logged validity), box sizes frozen at step 10. A WOSAC submission
  holds every simulated agent at every step, so a rollout must too: entries where
  ``rollouts.valid`` drops a simulated agent are still scored at the pose they hold
  (as the official evaluator would score the exported submission) and counted in
  ``invalid_sim_steps`` (0 for every policy of :mod:`sim_agent_policies`).
* **Features** (:mod:`features`, :mod:`road_edge`, :mod:`red_light`) per evaluated agent and future
  step; **likelihoods** (:mod:`estimators`): per agent, the histogram of its 32 x 80
  simulated values scores each valid logged step; Bernoulli features score the logged
  "any event" flag (events only counted at logged-valid steps). A feature's likelihood
  is ``exp`` of the mean log-likelihood over valid (agent, step) pairs (agents for
  Bernoulli). Speeds need both neighbours valid, accelerations twice that, TTC only for
  vehicles in 2025, traffic lights only for vehicles.
* **Scores.** Bucket = weighted mean of its features; meta-metric = sum of weight x
  likelihood. ADE averages the 3D error over all logged-valid steps, history included;
  minADE is the minimum over rollouts of the mean over agents. Rates are fractions of
  (rollout, agent) pairs with any event at a logged-valid step; collision and off-road
  rates also per agent type (NaN for a scenario without that type), and the off-road
  rate without the agents already off-road in the log (at the current step or at a
  logged future step, e.g. pedestrians on sidewalks), whose count is reported.

Shapes: ``log_state`` has batch shape ``(...)`` with ``log_trajectory`` ``(..., N, 91)``;
``rollouts`` is a :class:`Trajectory` ``(R, ..., N, 80)`` (the future, steps 11-90) or
``(R, ..., N, 91)`` (whole episodes; the history is replaced by the log). Only ``x, y,
z, yaw`` of the rollouts are scored (``valid`` is only checked, see "Trajectories").
Every result field has shape ``(...)``.

Two jitted halves: :func:`compute_features` (all the geometry, vmapped over scenarios,
``lax.map`` over rollouts) and :func:`score_features` (estimators; cheap, so one feature
pass can be scored under both the 2024 and the 2025 config). Road-edge distances use a
per-scenario grid index with a certified fallback; the counters
``road_edge_unresolved`` / ``red_light_unchecked`` report any query left unchecked:
the road-edge fallback repeats rounds of its budget until every query is exact (at most
64 rounds), the red-light checks have one budget of :class:`RealismOptions`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from spacer_jax.eval import estimators, features, red_light, road_edge
from spacer_jax.eval.wosac_config import BUCKETS, FEATURE_NAMES, WosacConfig, get_config
from spacer_jax.sim import geometry
from spacer_jax.sim.batching import map_leading_dims
from spacer_jax.sim.datatypes import (
  INIT_STEPS,
  ObjectMetadata,
  ObjectType,
  RoadgraphPoints,
  SimulatorState,
  TrafficLights,
  Trajectory,
)
from spacer_jax.sim.metrics.road_edges import RoadEdgeIndexConfig

CURRENT_STEP = INIT_STEPS - 1  # index 10: sim agents are the objects valid here
# Agent types with their own collision / off-road rates (RealismResult.*_rate_<type>).
AGENT_TYPES = {'vehicle': ObjectType.VEHICLE, 'pedestrian': ObjectType.PEDESTRIAN,
               'cyclist': ObjectType.CYCLIST}


@dataclasses.dataclass(frozen=True)
class RealismOptions:
  """Static sizes and speed/memory trade-offs (the metric definition is in the config).

  Attributes:
    max_evaluated_objects: evaluated-agent slots per scenario (WOMD: SDC + at most 8
      tracks_to_predict = 9); more raise an error (on concrete inputs).
    rollout_batch_size: rollouts whose features are computed at once (memory grows
      with it); None = all.
    road_edge_fallback: uncertified road-edge queries (box corners) redone by brute
      force per round, per scenario (log and all rollouts together); rounds repeat
      until none is left (``road_edge.refine_road_edge_distances``, at most 64), and
      any left after them are counted in ``RealismResult.road_edge_unresolved``.
    red_light_checks: stop-line crossings per scenario (log and all rollouts) whose
      nearest lane is checked; the rest are counted in
      ``RealismResult.red_light_unchecked``.
    max_lane_points: longest lane polyline searched for a stop point's segment.
    road_edge_index: grid of the road-edge candidate index.
  """

  max_evaluated_objects: int = 9
  rollout_batch_size: int | None = 8
  road_edge_fallback: int = 1024
  red_light_checks: int = 256
  max_lane_points: int = 1024
  road_edge_index: RoadEdgeIndexConfig = RoadEdgeIndexConfig()

  def __post_init__(self):
    for name in ('max_evaluated_objects', 'road_edge_fallback', 'red_light_checks',
                 'max_lane_points'):
      if getattr(self, name) < 1:
        raise ValueError(f'RealismOptions.{name} must be >= 1, got {getattr(self, name)}.')
    if self.rollout_batch_size is not None and self.rollout_batch_size < 1:
      raise ValueError('RealismOptions.rollout_batch_size must be >= 1 or None, got '
                       f'{self.rollout_batch_size}.')


@struct.dataclass
class RealismResult:
  """WOSAC metrics per scenario; every field has the scenario batch shape ``(...)``.

  Attributes:
    linear_speed ... traffic_light_violation: the ten feature likelihoods in [0, 1]
      (names of ``wosac_config.FEATURE_NAMES``).
    kinematic, interactive, map_based: bucket scores. meta_metric: the realism score.
    ade, min_ade: metres (average and minimum-over-rollouts ADE).
    collision_rate, offroad_rate, traffic_light_violation_rate: simulated event rates.
    collision_rate_<type>, offroad_rate_<type> (vehicle, pedestrian, cyclist): the
      rates over the evaluated agents of that type (NaN without any).
    offroad_rate_excl_log_offroad: the off-road rate over evaluated agents that are on
      the road in the log at the current step and at every logged future step.
    num_log_offroad: int32 evaluated agents off-road in the log (excluded above).
    num_evaluated: int32 evaluated agents (0: every metric is NaN).
    num_evaluated_<type>: int32 evaluated agents of each type.
    road_edge_unresolved: int32 road-edge queries left uncertified (should be 0).
    red_light_unchecked: int32 stop-line crossings not checked (should be 0).
    invalid_sim_steps: int32 (rollout, simulated agent, future step) entries a rollout
      marks invalid (should be 0: WOSAC simulates every agent valid at the current
      step for all future steps).
  """

  linear_speed: jax.Array
  linear_acceleration: jax.Array
  angular_speed: jax.Array
  angular_acceleration: jax.Array
  distance_to_nearest_object: jax.Array
  collision_indication: jax.Array
  time_to_collision: jax.Array
  distance_to_road_edge: jax.Array
  offroad_indication: jax.Array
  traffic_light_violation: jax.Array
  kinematic: jax.Array
  interactive: jax.Array
  map_based: jax.Array
  meta_metric: jax.Array
  ade: jax.Array
  min_ade: jax.Array
  collision_rate: jax.Array
  offroad_rate: jax.Array
  traffic_light_violation_rate: jax.Array
  collision_rate_vehicle: jax.Array
  collision_rate_pedestrian: jax.Array
  collision_rate_cyclist: jax.Array
  offroad_rate_vehicle: jax.Array
  offroad_rate_pedestrian: jax.Array
  offroad_rate_cyclist: jax.Array
  offroad_rate_excl_log_offroad: jax.Array
  num_log_offroad: jax.Array
  num_evaluated: jax.Array
  num_evaluated_vehicle: jax.Array
  num_evaluated_pedestrian: jax.Array
  num_evaluated_cyclist: jax.Array
  road_edge_unresolved: jax.Array
  red_light_unchecked: jax.Array
  invalid_sim_steps: jax.Array

  def likelihoods(self) -> dict[str, jax.Array]:
    """``{feature name: likelihood}`` in the evaluator's order."""
    return {name: getattr(self, name) for name in FEATURE_NAMES}

  def to_dict(self) -> dict[str, float]:
    """Every field as a Python float (scalar results, e.g. from :func:`aggregate`)."""
    return {f.name: float(np.asarray(getattr(self, f.name)))
            for f in dataclasses.fields(self)}


@struct.dataclass
class WosacFeatures:
  """The features of the log and of every rollout, before scoring.

  Scenes are the logged one (index 0) then the R rollouts (1..R): S = R + 1. E is
  ``RealismOptions.max_evaluated_objects``; T = 80 future steps.

  Attributes:
    linear_speed, linear_acceleration, angular_speed, angular_acceleration,
      distance_to_nearest_object, time_to_collision, distance_to_road_edge:
      ``(..., S, E, T)`` float32 (NaN where a finite difference is undefined).
    traffic_light_violation: ``(..., S, E, T)`` bool.
    ade: ``(..., S, E)`` metres, history steps included.
    log_valid: ``(..., E, T)`` bool, the logged validity that decides what is scored.
    eval_ok: ``(..., E)`` bool, the slot holds an evaluated agent.
    object_index: ``(..., E)`` int32 object row of each slot.
    object_type: ``(..., E)`` int32 :class:`ObjectType` of each slot.
    is_vehicle: ``(..., E)`` bool.
    current_distance_to_road_edge: ``(..., E)`` metres, the logged box's signed distance
      at the current step (positive: off road).
    has_road_edges: ``(...)`` bool (without, the map features are NaN).
    num_evaluated, road_edge_unresolved, red_light_unchecked, invalid_sim_steps:
      ``(...)`` int32, see :class:`RealismResult`.
  """

  linear_speed: jax.Array
  linear_acceleration: jax.Array
  angular_speed: jax.Array
  angular_acceleration: jax.Array
  distance_to_nearest_object: jax.Array
  time_to_collision: jax.Array
  distance_to_road_edge: jax.Array
  traffic_light_violation: jax.Array
  ade: jax.Array
  log_valid: jax.Array
  eval_ok: jax.Array
  object_index: jax.Array
  object_type: jax.Array
  is_vehicle: jax.Array
  current_distance_to_road_edge: jax.Array
  has_road_edges: jax.Array
  num_evaluated: jax.Array
  road_edge_unresolved: jax.Array
  red_light_unchecked: jax.Array
  invalid_sim_steps: jax.Array


_FIELDS = ('x', 'y', 'z', 'yaw', 'length', 'width', 'height')


def _scene(log: dict[str, jax.Array], log_valid: jax.Array, sim_agent: jax.Array,
           future: dict[str, jax.Array]):
  """91-step scene ``(N, T)``: the logged history, then ``future`` (x, y, z, yaw and
  validity, ``(N, T_future)``), box sizes frozen at the current step."""
  c = INIT_STEPS
  t_future = future['x'].shape[-1]
  out = {n: jnp.concatenate([log[n][:, :c], future[n]], -1) for n in ('x', 'y', 'z', 'yaw')}
  for n in ('length', 'width', 'height'):
    frozen = jnp.repeat(log[n][:, c - 1:c], t_future, axis=-1)
    out[n] = jnp.concatenate([log[n][:, :c], frozen], -1)
  valid = jnp.concatenate([log_valid[:, :c], future['valid']], -1)
  return out, valid & sim_agent[:, None]


def _road_query(box: dict[str, jax.Array]) -> jax.Array:
  """Road-edge query points ``(..., 4, 3)`` of boxes with fields ``(...)``: the four
  corners at the box's bottom (z - height / 2)."""
  corners = geometry.box_corners(*(box[n] for n in ('x', 'y', 'length', 'width', 'yaw')))
  bottom = (box['z'] - box['height'] / 2)[..., None, None]
  return jnp.concatenate([corners, jnp.broadcast_to(bottom, corners.shape[:-1] + (1,))],
                         -1)


def _scene_features(scene, valid, eval_index, log, log_valid, edges):
  """Features of one scene but the red-light one, plus the road-edge index answers
  (both finished per scenario, where the costly fallbacks share one budget)."""
  c = INIT_STEPS
  ev = {n: v[eval_index] for n, v in scene.items()}
  fut = {n: v[:, c:] for n, v in scene.items()}
  kin = features.kinematic_features(ev['x'], ev['y'], ev['z'], ev['yaw'])
  out = {f.name: getattr(kin, f.name)[:, c:] for f in dataclasses.fields(kin)}
  box = (fut['x'], fut['y'], fut['length'], fut['width'], fut['yaw'])
  out['distance_to_nearest_object'] = features.distance_to_nearest_object(
      *box, valid[:, c:], eval_index)
  speed = features.planar_speed(scene['x'], scene['y'])[:, c:]
  out['time_to_collision'] = features.time_to_collision(*box, speed, valid[:, c:],
                                                        eval_index)
  query = _road_query({n: v[:, c:] for n, v in ev.items()})  # (E, T, 4, 3)
  dist, exact = road_edge.indexed_road_edge_distances(query.reshape(-1, 3), edges)
  out.update(road_query=query, road_corners=dist.reshape(query.shape[:-1]),
             road_exact=exact.reshape(query.shape[:-1]))
  err = jnp.sqrt(sum((ev[n] - log[n][eval_index]) ** 2 for n in ('x', 'y', 'z')))
  out['ade'] = estimators.masked_mean(err, log_valid[eval_index], axis=-1)
  return out


def _features_single(log: Trajectory, meta: ObjectMetadata, rg: RoadgraphPoints,
                     lights: TrafficLights, future: dict[str, jax.Array],
                     options: RealismOptions) -> WosacFeatures:
  """One scenario; ``future`` fields ``(R, N, T_future)`` (x, y, z, yaw, valid)."""
  c = INIT_STEPS
  # The WOSAC sim set: every object valid at the current step, simulated (and a
  # partner of every evaluated agent) at all future steps; no other object exists.
  sim_agent = log.valid[:, CURRENT_STEP] & meta.is_valid
  evaluated = (meta.is_sdc | meta.is_modeled) & sim_agent
  e = options.max_evaluated_objects
  (eval_index,) = jnp.nonzero(evaluated, size=e, fill_value=0)
  eval_ok = jnp.arange(e) < jnp.sum(evaluated)
  # Invalid log entries read as 0, as in WOMD's Scenario protos (they only matter
  # through unmasked finite differences of the simulated histories).
  log_f = {n: jnp.where(log.valid, getattr(log, n), 0.0) for n in _FIELDS}
  edges = road_edge.build_road_edge_segments(rg, options.road_edge_index)
  lines = red_light.build_stop_lines(rg, lights, c, options.max_lane_points)

  # Scene 0 is the log (its own validity), scenes 1..R the rollouts: every sim agent
  # valid at every step, whatever ``rollouts.valid`` says (dropped entries are counted).
  future = dict(future)
  rollout_valid = future.pop('valid')
  invalid_sim_steps = jnp.sum(sim_agent[:, None] & ~rollout_valid, dtype=jnp.int32)
  r = future['x'].shape[0]
  scenes = {n: jnp.concatenate([log_f[n][None, :, c:], future[n]]) for n in future}
  scenes['valid'] = jnp.concatenate([log.valid[None, :, c:],
                                     jnp.ones((r,) + log.valid[:, c:].shape, bool)])

  def one_scene(fut):
    scene, valid = _scene(log_f, log.valid, sim_agent, fut)
    return _scene_features(scene, valid, eval_index, log_f, log.valid, edges)

  out = jax.lax.map(one_scene, scenes, batch_size=options.rollout_batch_size)
  log_valid = log.valid[eval_index, c:]
  valid = scenes['valid'][:, eval_index] & eval_ok[:, None]  # (S, E, T)

  # The logged boxes at the current step (agents already off road when the rollouts
  # start, e.g. pedestrians on sidewalks), queried with the scenes' corners.
  now_query = _road_query({n: log_f[n][eval_index, CURRENT_STEP] for n in _FIELDS})
  now_dist, now_exact = road_edge.indexed_road_edge_distances(now_query.reshape(-1, 3),
                                                              edges)
  now_ok = jnp.broadcast_to(eval_ok[:, None], now_query.shape[:-1]).reshape(-1)

  # Uncertified road-edge corners: one brute-force budget per scenario.
  road_exact = out.pop('road_exact')
  corner_valid = jnp.broadcast_to(valid[..., None], road_exact.shape)
  corners, unresolved = road_edge.refine_road_edge_distances(
      jnp.concatenate([now_query.reshape(-1, 3), out.pop('road_query').reshape(-1, 3)]),
      jnp.concatenate([now_dist, out.pop('road_corners').reshape(-1)]),
      jnp.concatenate([~now_exact & now_ok, (~road_exact & corner_valid).reshape(-1)]),
      edges, options.road_edge_fallback)
  m = now_dist.shape[0]
  current_road = jnp.max(corners[:m].reshape(now_query.shape[:-1]), axis=-1)
  road = jnp.max(corners[m:].reshape(road_exact.shape), axis=-1)
  out['distance_to_road_edge'] = jnp.where(valid, road, -road_edge.FAR)

  # Red lights: nearest-lane lookups only for the rare stop-line crossings.
  xy = jnp.stack([jnp.concatenate([jnp.broadcast_to(log_f[n][None, eval_index, c - 1:c],
                                                    (r + 1, e, 1)),
                                   scenes[n][:, eval_index]], -1) for n in ('x', 'y')], -1)
  red, unchecked = red_light.red_light_violations(
      xy.reshape(-1, xy.shape[2], 2), valid.reshape(-1, valid.shape[-1]), lines,
      options.red_light_checks)
  out['traffic_light_violation'] = red.reshape(valid.shape)
  types = meta.object_types[eval_index].astype(jnp.int32)
  return WosacFeatures(
      log_valid=log_valid, eval_ok=eval_ok, object_index=eval_index.astype(jnp.int32),
      object_type=types, is_vehicle=types == ObjectType.VEHICLE,
      current_distance_to_road_edge=jnp.where(eval_ok, current_road, -road_edge.FAR),
      has_road_edges=edges.num_segments > 0,
      num_evaluated=jnp.sum(evaluated, dtype=jnp.int32), road_edge_unresolved=unresolved,
      red_light_unchecked=unchecked, invalid_sim_steps=invalid_sim_steps, **out)


def _score_single(f: WosacFeatures, config: WosacConfig) -> RealismResult:
  """Likelihoods, buckets, ADE and rates of one scenario's features."""
  log_valid, eval_ok = f.log_valid, f.eval_ok
  speed_valid, accel_valid = features.kinematic_validity(log_valid)
  ttc_valid = log_valid & f.is_vehicle[:, None] if config.ttc_vehicles_only else log_valid
  masks = {'linear_speed': speed_valid, 'angular_speed': speed_valid,
           'linear_acceleration': accel_valid, 'angular_acceleration': accel_valid,
           'distance_to_nearest_object': log_valid, 'time_to_collision': ttc_valid,
           'distance_to_road_edge': log_valid}
  out = {}
  for name, mask in masks.items():
    values = getattr(f, name)  # (S, E, T)
    sim = jnp.moveaxis(values[1:], 0, 1).reshape(values.shape[1], -1)  # (E, R * T)
    ll = estimators.log_likelihood(config.feature(name), values[0], sim)
    out[name] = jnp.exp(estimators.masked_mean(ll, mask & eval_ok[:, None]))

  tl_valid = log_valid & f.is_vehicle[:, None]
  events = {'collision_indication': (f.distance_to_nearest_object < 0, log_valid),
            'offroad_indication': (f.distance_to_road_edge > 0, log_valid),
            'traffic_light_violation': (f.traffic_light_violation, tl_valid)}
  flags = {}
  for name, (event, mask) in events.items():
    flags[name] = jnp.any(event & mask, axis=-1)  # (S, E): any event at scored steps
    ll = estimators.log_likelihood(config.feature(name), flags[name][0], flags[name][1:].T)
    out[name] = jnp.exp(estimators.masked_mean(ll, eval_ok))
  for name in ('distance_to_road_edge', 'offroad_indication'):
    out[name] = jnp.where(f.has_road_edges, out[name], jnp.nan)

  for bucket in BUCKETS:
    weights = config.bucket_weights(bucket)
    out[bucket] = sum(w * out[n] for n, w in weights.items()) / sum(weights.values())
  out['meta_metric'] = sum(feat.weight * out[feat.name] for feat in config.features)

  pair_ok = jnp.broadcast_to(eval_ok, f.ade[1:].shape)
  out['ade'] = estimators.masked_mean(f.ade[1:], pair_ok)
  out['min_ade'] = jnp.min(estimators.masked_mean(f.ade[1:], pair_ok, axis=-1))
  collided, offroad = flags['collision_indication'], flags['offroad_indication']
  out['collision_rate'] = estimators.masked_mean(collided[1:], pair_ok)
  out['offroad_rate'] = estimators.masked_mean(offroad[1:], pair_ok)
  # The evaluator's rate counts every evaluated agent, vehicles or not.
  out['traffic_light_violation_rate'] = estimators.masked_mean(
      jnp.any(f.traffic_light_violation[1:] & log_valid, axis=-1), pair_ok)
  counts = {}
  for name, object_type in AGENT_TYPES.items():
    of_type = pair_ok & (f.object_type == object_type)
    out[f'collision_rate_{name}'] = estimators.masked_mean(collided[1:], of_type)
    out[f'offroad_rate_{name}'] = estimators.masked_mean(offroad[1:], of_type)
    counts[f'num_evaluated_{name}'] = jnp.sum(eval_ok & (f.object_type == object_type),
                                              dtype=jnp.int32)
  # Off road in the log already: a policy that reproduces the log is "off road" too,
  # so these agents say nothing about a policy leaving the road.
  log_offroad = eval_ok & (offroad[0] | (f.current_distance_to_road_edge > 0))
  out['offroad_rate_excl_log_offroad'] = estimators.masked_mean(offroad[1:],
                                                                pair_ok & ~log_offroad)
  return RealismResult(num_evaluated=f.num_evaluated,
                       num_log_offroad=jnp.sum(log_offroad, dtype=jnp.int32),
                       road_edge_unresolved=f.road_edge_unresolved,
                       red_light_unchecked=f.red_light_unchecked,
                       invalid_sim_steps=f.invalid_sim_steps, **counts, **out)


@functools.partial(jax.jit, static_argnames=('options',))
def _features_jit(log, meta, rg, lights, future, options):
  fn = lambda *args: _features_single(*args, options=options)
  return map_leading_dims(fn, log.x.ndim - 2)(log, meta, rg, lights, future)


@functools.partial(jax.jit, static_argnames=('config',))
def _score_jit(f, config):
  return map_leading_dims(lambda x: _score_single(x, config), f.num_evaluated.ndim)(f)


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def compute_features(log_state: SimulatorState, rollouts: Trajectory,
                     options: RealismOptions | None = None) -> WosacFeatures:
  """The WOSAC features of the log and the rollouts (jitted; see :func:`compute_realism`).

  Scoring them with :func:`score_features` under several configs reuses the work.
  """
  options = RealismOptions() if options is None else options
  log = log_state.log_trajectory
  batch, n, t = log.shape[:-2], log.num_objects, log.num_timesteps
  t_future = t - INIT_STEPS
  if t_future < 1:
    raise ValueError(f'compute_realism: log_trajectory has {t} steps, expected more than '
                     f'{INIT_STEPS} (history) steps.')
  shape = tuple(rollouts.x.shape)
  if len(shape) != len(batch) + 3 or shape[1:-1] != batch + (n,) or (
      shape[-1] not in (t_future, t)):
    raise ValueError(
        f'compute_realism: rollouts have shape {shape}, expected (R,) + {batch} + ({n}, '
        f'{t_future}) (future steps) or (R,) + {batch} + ({n}, {t}) (batch shape and '
        'object count of log_state).')
  meta = log_state.object_metadata
  if all(_is_concrete(v) for v in (meta.is_sdc, meta.is_modeled, log.valid)):
    counts = np.sum((np.asarray(meta.is_sdc) | np.asarray(meta.is_modeled))
                    & np.asarray(log.valid)[..., CURRENT_STEP]
                    & np.asarray(meta.is_valid), axis=-1)
    if counts.size and counts.max() > options.max_evaluated_objects:
      raise ValueError(
          f'compute_realism: a scenario has {int(counts.max())} evaluated agents (SDC + '
          f'is_modeled), more than RealismOptions.max_evaluated_objects='
          f'{options.max_evaluated_objects}.')
  future = {}
  for name in ('x', 'y', 'z', 'yaw', 'valid'):
    dtype = bool if name == 'valid' else jnp.float32
    v = jnp.asarray(getattr(rollouts, name), dtype)[..., -t_future:]
    future[name] = jnp.moveaxis(v, 0, len(batch))  # (..., R, N, Tf)
  return _features_jit(log, meta, log_state.roadgraph_points, log_state.log_traffic_light,
                       future, options=options)


def score_features(features_: WosacFeatures, config: str | WosacConfig = '2025'
                   ) -> RealismResult:
  """Scores :func:`compute_features`' output under ``config`` (jitted)."""
  return _score_jit(features_, config=get_config(config))


def compute_realism(log_state: SimulatorState, rollouts: Trajectory,
                    config: str | WosacConfig = '2025',
                    options: RealismOptions | None = None) -> RealismResult:
  """WOSAC realism metrics of ``rollouts`` against the log (module docstring).

  Args:
    log_state: batch shape ``(...)``; reads ``log_trajectory`` ``(..., N, T)`` (T = 91
      in WOMD), ``object_metadata``, ``roadgraph_points`` and ``log_traffic_light``.
    rollouts: :class:`Trajectory` ``(R, ..., N, T - 11)`` (simulated future) or
      ``(R, ..., N, T)``; ``x, y, z, yaw`` are scored, ``valid`` only counted
      (``RealismResult.invalid_sim_steps``).
    config: ``'2025'`` (default), ``'2024'`` or a :class:`WosacConfig`.
    options: static sizes, see :class:`RealismOptions`.

  Returns:
    :class:`RealismResult` with fields of shape ``(...)``. Jitted: features compile
    once per shape and options, scoring once per config.

  Raises:
    ValueError: on mismatched shapes or too many evaluated agents.
  """
  config = get_config(config)  # fail on a bad name before the costly part
  return score_features(compute_features(log_state, rollouts, options), config)


# Counters, summed over scenarios by :func:`aggregate`.
_SUMMED = ('num_evaluated', 'num_log_offroad', 'road_edge_unresolved', 'red_light_unchecked',
           'invalid_sim_steps') + tuple(f'num_evaluated_{t}' for t in AGENT_TYPES)
# Rates over a subset of the evaluated agents, NaN in scenarios without any: averaged
# over the scenarios that have some.
_SUBSET_RATES = ('offroad_rate_excl_log_offroad',) + tuple(
    f'{rate}_{t}' for rate in ('collision_rate', 'offroad_rate') for t in AGENT_TYPES)


def aggregate(results: RealismResult | Sequence[RealismResult]) -> RealismResult:
  """Dataset-level metrics: the mean over scenarios (all leading dims, and over the
  list when given a sequence), skipping scenarios without evaluated agents.

  ``num_*`` counts and the diagnostic counters are summed instead; the per-type rates
  and ``offroad_rate_excl_log_offroad`` average the scenarios that have such agents.
  """
  if not isinstance(results, RealismResult):
    results = jax.tree_util.tree_map(
        lambda *v: np.concatenate([np.asarray(x).reshape(-1) for x in v]), *results)
  flat = jax.tree_util.tree_map(lambda v: np.asarray(v).reshape(-1), results)
  keep = flat.num_evaluated > 0
  out = {}
  for f in dataclasses.fields(flat):
    v = getattr(flat, f.name)
    if f.name in _SUMMED:
      out[f.name] = np.asarray(v.sum(), np.int32)
      continue
    v = v[keep]
    if f.name in _SUBSET_RATES:
      v = v[~np.isnan(v)]
    out[f.name] = np.asarray(v.mean() if v.size else np.nan, np.float32)
  return RealismResult(**out)
