"""WOMD ``tf.Example`` records: feature spec, parser, reader into ``SimulatorState``, writer.

The feature names, shapes and dtypes are those of the Waymo Open Motion Dataset's
tf.Example files (see ``shared/specs/waymax.md``): 128 object rows, 10 past + 1 current
+ 80 future steps, 16 traffic-light slots and P roadgraph samples (20000 for WOMD
1.0/1.1, 30000 for 1.2), optional route ``path_samples`` (1.3.1+).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Optional, Union

import numpy as np

from spacer_jax.data.womd._tf import tf
from spacer_jax.data.womd.assemble import RawScenario, check_finite, raw_to_state
from spacer_jax.data.womd.errors import RecordError
from spacer_jax.sim.datatypes import (
    DEFAULT_NUM_OBJECTS,
    DEFAULT_NUM_ROADGRAPH_POINTS,
    INVALID_FLOAT,
    NUM_TIMESTEPS,
    NUM_TRAFFIC_LIGHTS,
    TIMESTEP_MICROS,
    SimulatorState,
)

NUM_OBJECTS = 128  # object rows of every WOMD tf.Example
ROADGRAPH_SIZES = (20000, 30000)  # roadgraph samples: WOMD 1.0/1.1, WOMD 1.2+
STEPS = (('past', 10), ('current', 1), ('future', 80))  # 91 steps in all
OBJECT_FLOATS = ('x', 'y', 'z', 'bbox_yaw', 'height', 'length', 'width', 'vel_yaw',
                 'speed', 'velocity_x', 'velocity_y')
OBJECT_INTS = ('timestamp_micros', 'valid')
LIGHT_FLOATS = ('x', 'y', 'z')
LIGHT_INTS = ('state', 'valid', 'id')
SCENARIO_ID = 'scenario/id'
# Trajectory field <- tf.Example object feature.
_TRAJECTORY_SOURCE = {'x': 'x', 'y': 'y', 'z': 'z', 'vel_x': 'velocity_x',
                      'vel_y': 'velocity_y', 'yaw': 'bbox_yaw', 'length': 'length',
                      'width': 'width', 'height': 'height'}
_MAX_EXACT_FLOAT_INT = 2**24  # ids are stored as float32: exact below this


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """One fixed-length feature: ``kind`` is 'float', 'int64' or 'bytes'."""

  kind: str
  shape: tuple[int, ...]

  @property
  def size(self) -> int:
    return int(np.prod(self.shape))


def feature_spec(num_rg_points: int = DEFAULT_NUM_ROADGRAPH_POINTS,
                 num_paths: Optional[int] = None,
                 num_points_per_path: Optional[int] = None) -> dict[str, FeatureSpec]:
  """The WOMD tf.Example features, name -> kind and shape.

  Args:
    num_rg_points: roadgraph samples P (20000 or 30000 in WOMD).
    num_paths, num_points_per_path: include the optional ``path_samples/*`` route
      features with these sizes (both or neither).
  """
  spec = {
      'roadgraph_samples/xyz': FeatureSpec('float', (num_rg_points, 3)),
      'roadgraph_samples/dir': FeatureSpec('float', (num_rg_points, 3)),
      'roadgraph_samples/id': FeatureSpec('int64', (num_rg_points, 1)),
      'roadgraph_samples/type': FeatureSpec('int64', (num_rg_points, 1)),
      'roadgraph_samples/valid': FeatureSpec('int64', (num_rg_points, 1)),
      'state/id': FeatureSpec('float', (NUM_OBJECTS,)),
      'state/type': FeatureSpec('float', (NUM_OBJECTS,)),
      'state/is_sdc': FeatureSpec('int64', (NUM_OBJECTS,)),
      'state/tracks_to_predict': FeatureSpec('int64', (NUM_OBJECTS,)),
      'state/objects_of_interest': FeatureSpec('int64', (NUM_OBJECTS,)),
  }
  for part, steps in STEPS:
    for name in OBJECT_FLOATS:
      spec[f'state/{part}/{name}'] = FeatureSpec('float', (NUM_OBJECTS, steps))
    for name in OBJECT_INTS:
      spec[f'state/{part}/{name}'] = FeatureSpec('int64', (NUM_OBJECTS, steps))
    for name in LIGHT_INTS:
      spec[f'traffic_light_state/{part}/{name}'] = FeatureSpec(
          'int64', (steps, NUM_TRAFFIC_LIGHTS))
    for name in LIGHT_FLOATS:
      spec[f'traffic_light_state/{part}/{name}'] = FeatureSpec(
          'float', (steps, NUM_TRAFFIC_LIGHTS))
    spec[f'traffic_light_state/{part}/timestamp_micros'] = FeatureSpec('int64', (steps,))
  if (num_paths is None) != (num_points_per_path is None):
    raise ValueError('give both num_paths and num_points_per_path, or neither.')
  if num_paths is not None:
    shape = (num_paths, num_points_per_path)
    spec['path_samples/xyz'] = FeatureSpec('float', shape + (3,))
    spec['path_samples/valid'] = FeatureSpec('int64', shape)
    spec['path_samples/id'] = FeatureSpec('int64', shape)
    spec['path_samples/arc_length'] = FeatureSpec('float', shape)
    spec['path_samples/on_route'] = FeatureSpec('int64', (num_paths, 1))
  return spec


def tf_feature_description(num_rg_points: int = DEFAULT_NUM_ROADGRAPH_POINTS
                           ) -> dict[str, tf.io.FixedLenFeature]:
  """The spec as ``tf.io.FixedLenFeature`` s, for ``tf.io.parse_example`` users."""
  dtypes = {'float': tf.float32, 'int64': tf.int64, 'bytes': tf.string}
  return {name: tf.io.FixedLenFeature(s.shape, dtypes[s.kind])
          for name, s in feature_spec(num_rg_points).items()}


_LIST_OF_KIND = {'float': 'float_list', 'int64': 'int64_list', 'bytes': 'bytes_list'}
_NP_DTYPE = {'float': np.float32, 'int64': np.int64}


def _values(feature_map, name: str, spec: FeatureSpec) -> np.ndarray:
  if name not in feature_map:
    raise RecordError('missing feature', field=name)
  feature = feature_map[name]
  kind = feature.WhichOneof('kind')
  if kind != _LIST_OF_KIND[spec.kind]:
    raise RecordError(f'holds a {kind}, expected a {_LIST_OF_KIND[spec.kind]}',
                      field=name)
  values = np.asarray(getattr(feature, kind).value, _NP_DTYPE[spec.kind])
  if values.size != spec.size:
    raise RecordError(f'has {values.size} values, expected shape {spec.shape} '
                      f'({spec.size} values)', field=name)
  return values.reshape(spec.shape)


def _infer_rg_points(feature_map) -> int:
  """Roadgraph samples announced by the record (must be a WOMD size)."""
  name = 'roadgraph_samples/valid'
  if name not in feature_map:
    raise RecordError('missing feature', field=name)
  num_rg = len(feature_map[name].int64_list.value)
  if num_rg not in ROADGRAPH_SIZES:
    raise RecordError(f'has {num_rg} values, expected one of {ROADGRAPH_SIZES} '
                      '(WOMD roadgraph sizes)', field=name)
  return num_rg


def _infer_path_sizes(feature_map) -> tuple[Optional[int], Optional[int]]:
  """(num_paths, num_points_per_path) of the optional route features, or Nones."""
  if 'path_samples/on_route' not in feature_map:
    return None, None
  num_paths = len(feature_map['path_samples/on_route'].int64_list.value)
  total = len(feature_map['path_samples/valid'].int64_list.value) \
      if 'path_samples/valid' in feature_map else 0
  if num_paths == 0 or total % num_paths:
    raise RecordError(f'has {total} values, not a multiple of num_paths={num_paths} '
                      '(from path_samples/on_route)', field='path_samples/valid')
  return num_paths, total // num_paths


def parse_example(serialized: bytes, num_rg_points: Optional[int] = None
                  ) -> dict[str, np.ndarray]:
  """Parses one serialized WOMD tf.Example into numpy arrays of the spec's shapes.

  Args:
    serialized: the record's bytes.
    num_rg_points: expected roadgraph samples; None accepts 20000 or 30000.

  Returns:
    Feature name -> array (float32 or int64, shaped as in :func:`feature_spec`), plus
    ``'scenario/id'`` (str) when the record has it. Extra features are ignored.

  Raises:
    RecordError: naming the feature that is missing or has the wrong type or size.
  """
  try:
    example = tf.train.Example.FromString(serialized)
  except Exception as e:  # protobuf's DecodeError has no stable import path
    raise RecordError(f'not a tf.Example proto ({e})', field='record') from e
  feature_map = example.features.feature
  if num_rg_points is None:
    num_rg_points = _infer_rg_points(feature_map)
  num_paths, num_points = _infer_path_sizes(feature_map)
  spec = feature_spec(num_rg_points, num_paths, num_points)
  out = {name: _values(feature_map, name, s) for name, s in spec.items()}
  if SCENARIO_ID in feature_map and feature_map[SCENARIO_ID].bytes_list.value:
    out[SCENARIO_ID] = feature_map[SCENARIO_ID].bytes_list.value[0].decode(
        'utf-8', 'replace')
  return out


def _over_time(features: Mapping[str, np.ndarray], prefix: str, name: str, axis: int
               ) -> np.ndarray:
  return np.concatenate([features[f'{prefix}/{part}/{name}'] for part, _ in STEPS],
                        axis=axis)


def _check_finite_features(features: Mapping[str, np.ndarray]) -> None:
  """NaN/inf in an entry marked valid -> ``RecordError`` naming the WOMD feature."""
  for part, _ in STEPS:
    valid = features[f'state/{part}/valid'] > 0
    for name in OBJECT_FLOATS:
      if name in ('speed', 'vel_yaw'):
        continue  # derived values the reader does not use
      check_finite(features[f'state/{part}/{name}'], valid, f'state/{part}/{name}')
    valid = features[f'traffic_light_state/{part}/valid'] > 0
    for name in LIGHT_FLOATS:
      check_finite(features[f'traffic_light_state/{part}/{name}'], valid,
                   f'traffic_light_state/{part}/{name}')
  valid = features['roadgraph_samples/valid'] > 0
  for name in ('xyz', 'dir'):
    check_finite(features[f'roadgraph_samples/{name}'], valid, f'roadgraph_samples/{name}')
  if 'path_samples/xyz' in features:
    valid = features['path_samples/valid'] > 0
    check_finite(features['path_samples/xyz'], valid[..., None], 'path_samples/xyz')
    check_finite(features['path_samples/arc_length'], valid, 'path_samples/arc_length')


def example_to_raw(features: Mapping[str, np.ndarray]) -> RawScenario:
  """Parsed features -> unpadded :class:`RawScenario` (128 objects, P points)."""
  _check_finite_features(features)
  valid = _over_time(features, 'state', 'valid', axis=1) > 0
  trajectory = {field: _over_time(features, 'state', source, axis=1).astype(np.float32)
                for field, source in _TRAJECTORY_SOURCE.items()}
  trajectory['valid'] = valid
  trajectory['timestamp_micros'] = _over_time(
      features, 'state', 'timestamp_micros', axis=1).astype(np.int32)
  ttp = features['state/tracks_to_predict']
  metadata = {
      'ids': features['state/id'].astype(np.int32),
      'object_types': features['state/type'].astype(np.int32),
      'is_sdc': features['state/is_sdc'] > 0,
      'is_modeled': ttp == 1,
      'is_valid': ttp != -1,
      'objects_of_interest': features['state/objects_of_interest'] > 0,
  }
  # Traffic lights are stored [T, 16]; the state wants [16, T].
  lights = {name: _over_time(features, 'traffic_light_state', name, axis=0).T
            for name in LIGHT_FLOATS + LIGHT_INTS}
  traffic_lights = {
      'x': lights['x'], 'y': lights['y'], 'z': lights['z'],
      'state': lights['state'].astype(np.int32),
      'lane_ids': lights['id'].astype(np.int32), 'valid': lights['valid'] > 0}
  xyz = features['roadgraph_samples/xyz']
  dirs = features['roadgraph_samples/dir']
  roadgraph = {
      'x': xyz[:, 0], 'y': xyz[:, 1], 'z': xyz[:, 2],
      'dir_x': dirs[:, 0], 'dir_y': dirs[:, 1], 'dir_z': dirs[:, 2],
      'types': features['roadgraph_samples/type'][:, 0].astype(np.int32),
      'ids': features['roadgraph_samples/id'][:, 0].astype(np.int32),
      'valid': features['roadgraph_samples/valid'][:, 0] > 0}
  paths = None
  if 'path_samples/xyz' in features:
    pxyz = features['path_samples/xyz']
    paths = {
        'x': pxyz[..., 0], 'y': pxyz[..., 1], 'z': pxyz[..., 2],
        'ids': features['path_samples/id'].astype(np.int32),
        'valid': features['path_samples/valid'] > 0,
        'arc_length': features['path_samples/arc_length'].astype(np.float32),
        'on_route': features['path_samples/on_route'] > 0}
  return RawScenario(trajectory=trajectory, metadata=metadata, roadgraph=roadgraph,
                     traffic_lights=traffic_lights, paths=paths,
                     scenario_id=str(features.get(SCENARIO_ID, '')))


def example_to_state(features: Union[Mapping[str, np.ndarray], bytes],
                     max_num_objects: int = DEFAULT_NUM_OBJECTS,
                     max_num_rg_points: int = DEFAULT_NUM_ROADGRAPH_POINTS
                     ) -> SimulatorState:
  """A WOMD tf.Example -> unbatched ``SimulatorState`` with Waymax's conventions.

  Args:
    features: :func:`parse_example` output, or the serialized record.
    max_num_objects: object slots; with fewer than 128, keeps the SDC, modeled agents,
      objects of interest, then the valid objects nearest to the SDC.
    max_num_rg_points: roadgraph slots; with fewer than P, keeps road edges and the
      points nearest to the SDC, in record order.

  Returns:
    ``SimulatorState`` (numpy leaves): trajectories ``(max_num_objects, 91)``
    (yaw = bbox_yaw, vel = velocity_x/y, invalid entries -1), metadata
    (is_modeled = tracks_to_predict == 1, is_valid = tracks_to_predict != -1),
    traffic lights ``(16, 91)``, roadgraph ``(max_num_rg_points,)``, timestep 0.

  Raises:
    RecordError: naming the feature (or datatype field) at fault.
  """
  if isinstance(features, (bytes, bytearray)):
    features = parse_example(bytes(features))
  return raw_to_state(example_to_raw(features), max_num_objects, max_num_rg_points)


def _float_feature(values: np.ndarray):
  return tf.train.Feature(
      float_list=tf.train.FloatList(value=np.asarray(values, np.float32).ravel().tolist()))


def _int_feature(values: np.ndarray):
  return tf.train.Feature(
      int64_list=tf.train.Int64List(value=np.asarray(values, np.int64).ravel().tolist()))


def _pad(arr: np.ndarray, size: int, fill) -> np.ndarray:
  out = np.full((size,) + arr.shape[1:], fill, arr.dtype)
  out[:len(arr)] = arr
  return out


def state_to_example(state: SimulatorState, scenario_id: Optional[str] = None,
                     num_rg_points: Optional[int] = None):
  """Writes an unbatched state's log as a WOMD ``tf.train.Example``.

  Objects are padded to 128 rows (invalid, ``tracks_to_predict = -1``), the roadgraph
  to ``num_rg_points`` (default: 20000, or 30000 when more points are needed).
  ``speed`` and ``vel_yaw`` are derived from the velocity. ``sim_trajectory``,
  ``timestep`` and ``is_controlled`` are not part of the format and are not written.
  Reading the result with ``example_to_state(..., max_num_objects=N,
  max_num_rg_points=P)`` (N, P: the state's sizes) gives the state back exactly when
  it follows the loader conventions (timestep 0, sim = log, nothing controlled,
  invalid trajectory entries -1).

  Raises:
    ValueError: when the state cannot be represented (batched, more than 128 objects,
      not 91 steps, more than 16 lights, ids not exact in float32, modeled objects
      that are not valid).
  """
  log = state.log_trajectory
  meta = state.object_metadata
  if np.ndim(state.timestep) != 0:
    raise ValueError(f'state must be unbatched, got batch shape {state.shape}.')
  n, t = log.num_objects, log.num_timesteps
  if n > NUM_OBJECTS or t != NUM_TIMESTEPS:
    raise ValueError(f'WOMD tf.Examples hold (<= {NUM_OBJECTS} objects, {NUM_TIMESTEPS}'
                     f' steps), got ({n}, {t}).')
  g = lambda x: np.asarray(x)  # noqa: E731  (host copies of the leaves)
  valid = g(log.valid)
  is_valid, is_modeled = g(meta.is_valid), g(meta.is_modeled)
  if np.any(is_modeled & ~is_valid):
    raise ValueError('is_modeled objects must be is_valid: tracks_to_predict cannot '
                     'express both 1 and -1.')
  ids = g(meta.ids)
  if np.any(np.abs(ids) >= _MAX_EXACT_FLOAT_INT):
    raise ValueError(f'object ids must be below {_MAX_EXACT_FLOAT_INT} in magnitude to '
                     'be exact in the float32 state/id feature.')
  fill = lambda a: np.where(valid, g(a), INVALID_FLOAT)  # noqa: E731
  vel_x, vel_y = fill(log.vel_x), fill(log.vel_y)
  per_step = {
      'x': fill(log.x), 'y': fill(log.y), 'z': fill(log.z), 'bbox_yaw': fill(log.yaw),
      'height': fill(log.height), 'length': fill(log.length), 'width': fill(log.width),
      'velocity_x': vel_x, 'velocity_y': vel_y,
      'speed': np.where(valid, np.hypot(vel_x, vel_y), INVALID_FLOAT),
      'vel_yaw': np.where(valid, np.arctan2(vel_y, vel_x), INVALID_FLOAT),
      'timestamp_micros': np.where(valid, g(log.timestamp_micros), -1),
      'valid': valid.astype(np.int64)}
  feats = {}
  bounds = np.cumsum([0] + [steps for _, steps in STEPS])
  for (part, _), start, stop in zip(STEPS, bounds[:-1], bounds[1:]):
    for name, arr in per_step.items():
      padded = _pad(arr[:, start:stop], NUM_OBJECTS, INVALID_FLOAT if name in
                    OBJECT_FLOATS else (0 if name == 'valid' else -1))
      maker = _float_feature if name in OBJECT_FLOATS else _int_feature
      feats[f'state/{part}/{name}'] = maker(padded)
  ttp = np.where(is_modeled, 1, np.where(is_valid, 0, -1))
  feats['state/id'] = _float_feature(_pad(ids.astype(np.float32), NUM_OBJECTS, -1))
  feats['state/type'] = _float_feature(
      _pad(g(meta.object_types).astype(np.float32), NUM_OBJECTS, -1))
  feats['state/is_sdc'] = _int_feature(_pad(g(meta.is_sdc), NUM_OBJECTS, 0))
  feats['state/tracks_to_predict'] = _int_feature(_pad(ttp, NUM_OBJECTS, -1))
  feats['state/objects_of_interest'] = _int_feature(
      _pad(g(meta.objects_of_interest), NUM_OBJECTS, 0))
  feats.update(_lights_features(state, valid))
  feats.update(_roadgraph_features(state, num_rg_points))
  if state.sdc_paths is not None:
    feats.update(_path_features(state.sdc_paths))
  if scenario_id is not None:
    feats[SCENARIO_ID] = tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[scenario_id.encode('utf-8')]))
  return tf.train.Example(features=tf.train.Features(feature=feats))


def _lights_features(state: SimulatorState, valid: np.ndarray) -> dict:
  lights = state.log_traffic_light
  if lights.num_traffic_lights > NUM_TRAFFIC_LIGHTS:
    raise ValueError(f'{lights.num_traffic_lights} traffic lights do not fit in '
                     f'WOMD\'s {NUM_TRAFFIC_LIGHTS} slots.')
  # Step timestamps: any valid object's (they agree within a step), else nominal 10 Hz.
  stamps = np.asarray(state.log_trajectory.timestamp_micros).astype(np.int64)
  nominal = np.arange(valid.shape[1], dtype=np.int64) * TIMESTEP_MICROS
  step_stamps = np.where(valid.any(0), np.where(valid, stamps, -1).max(0), nominal)
  arrays = {'x': lights.x, 'y': lights.y, 'z': lights.z, 'state': lights.state,
            'id': lights.lane_ids, 'valid': lights.valid}
  fills = {'x': INVALID_FLOAT, 'y': INVALID_FLOAT, 'z': INVALID_FLOAT, 'state': -1,
           'id': -1, 'valid': 0}
  feats = {}
  bounds = np.cumsum([0] + [steps for _, steps in STEPS])
  for (part, _), start, stop in zip(STEPS, bounds[:-1], bounds[1:]):
    for name, arr in arrays.items():
      padded = _pad(np.asarray(arr)[:, start:stop], NUM_TRAFFIC_LIGHTS, fills[name]).T
      maker = _float_feature if name in LIGHT_FLOATS else _int_feature
      feats[f'traffic_light_state/{part}/{name}'] = maker(padded)
    feats[f'traffic_light_state/{part}/timestamp_micros'] = _int_feature(
        step_stamps[start:stop])
  return feats


def _roadgraph_features(state: SimulatorState, num_rg_points: Optional[int]) -> dict:
  rg = state.roadgraph_points
  p = rg.num_points
  if num_rg_points is None:
    fitting = [size for size in ROADGRAPH_SIZES if size >= p]
    if not fitting:
      raise ValueError(f'{p} roadgraph points exceed WOMD\'s largest size '
                       f'{ROADGRAPH_SIZES[-1]}; pass num_rg_points.')
    num_rg_points = fitting[0]
  if p > num_rg_points:
    raise ValueError(f'{p} roadgraph points do not fit in num_rg_points={num_rg_points}.')
  xyz = np.stack([np.asarray(rg.x), np.asarray(rg.y), np.asarray(rg.z)], -1)
  dirs = np.stack([np.asarray(rg.dir_x), np.asarray(rg.dir_y), np.asarray(rg.dir_z)], -1)
  return {
      'roadgraph_samples/xyz': _float_feature(_pad(xyz, num_rg_points, INVALID_FLOAT)),
      'roadgraph_samples/dir': _float_feature(_pad(dirs, num_rg_points, INVALID_FLOAT)),
      'roadgraph_samples/id': _int_feature(_pad(np.asarray(rg.ids), num_rg_points, -1)),
      'roadgraph_samples/type': _int_feature(
          _pad(np.asarray(rg.types), num_rg_points, -1)),
      'roadgraph_samples/valid': _int_feature(
          _pad(np.asarray(rg.valid), num_rg_points, 0)),
  }


def _path_features(paths) -> dict:
  xyz = np.stack([np.asarray(paths.x), np.asarray(paths.y), np.asarray(paths.z)], -1)
  return {
      'path_samples/xyz': _float_feature(xyz),
      'path_samples/valid': _int_feature(np.asarray(paths.valid)),
      'path_samples/id': _int_feature(np.asarray(paths.ids)),
      'path_samples/arc_length': _float_feature(np.asarray(paths.arc_length)),
      'path_samples/on_route': _int_feature(np.asarray(paths.on_route)),
  }
