"""Unpadded scenario arrays -> fixed-size ``SimulatorState``, shared by both readers.

Both WOMD formats are first decoded into a :class:`RawScenario` (plain numpy arrays of
whatever size the record has); this module then picks which objects and map points fit
in the fixed slots, pads, applies Waymax's invalid conventions and validates.

Object selection (when a record has more objects than ``max_num_objects``): the SDC
first, then modeled agents (tracks_to_predict), objects of interest, other valid objects
by distance to the SDC, then the rest; the kept rows stay in record order. Waymax's own
loader slices the first rows instead, which can drop the SDC.

Roadgraph capping (more valid points than ``max_num_rg_points``): road edges first (the
off-road metric needs them), then the points nearest to the SDC; kept points stay in
record order, so every polyline keeps its point order.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from spacer_jax.data.womd.errors import RecordError, from_validation_error
from spacer_jax.sim.datatypes import (
    INIT_STEPS,
    INVALID_FLOAT,
    INVALID_INT,
    DataValidationError,
    ObjectMetadata,
    Paths,
    RoadgraphPoints,
    SimulatorState,
    TrafficLights,
    Trajectory,
)

TRAJECTORY_FLOATS = ('x', 'y', 'z', 'vel_x', 'vel_y', 'yaw', 'length', 'width', 'height')
METADATA_BOOLS = ('is_sdc', 'is_modeled', 'is_valid', 'objects_of_interest')
ROADGRAPH_FLOATS = ('x', 'y', 'z', 'dir_x', 'dir_y', 'dir_z')
# Road edge types kept first when capping the map (14 unknown, 15 boundary, 16 median).
_EDGE_TYPES = (14, 15, 16)
# Priority groups of object selection (lower is kept first).
_SDC, _MODELED, _INTEREST, _VALID, _OTHER = range(5)


@dataclasses.dataclass
class RawScenario:
  """One decoded record, before selection and padding (host numpy arrays).

  Attributes:
    trajectory: ``TRAJECTORY_FLOATS`` float32, ``valid`` bool and ``timestamp_micros``
      int32, each ``(N, T)``.
    metadata: ``ids``, ``object_types`` int32 and ``METADATA_BOOLS`` bool, each ``(N,)``.
    roadgraph: ``ROADGRAPH_FLOATS`` float32, ``types``, ``ids`` int32, ``valid`` bool,
      each ``(P,)``.
    traffic_lights: ``x, y, z`` float32, ``state``, ``lane_ids`` int32, ``valid`` bool,
      each ``(L, T)``.
    paths: optional ``Paths`` fields as numpy arrays.
    scenario_id: WOMD scenario id ('' if unknown).
  """

  trajectory: dict[str, np.ndarray]
  metadata: dict[str, np.ndarray]
  roadgraph: dict[str, np.ndarray]
  traffic_lights: dict[str, np.ndarray]
  paths: Optional[dict[str, np.ndarray]] = None
  scenario_id: str = ''


def sdc_reference_xy(raw: RawScenario) -> np.ndarray:
  """The SDC's position ``(2,)`` at the current step (t = 10), used to rank distances.

  Falls back to the SDC's first valid step, then to the mean of all valid positions,
  then to the origin.
  """
  traj, meta = raw.trajectory, raw.metadata
  valid = traj['valid']
  xy = np.stack([traj['x'], traj['y']], -1)
  t_now = min(INIT_STEPS - 1, valid.shape[-1] - 1)
  sdc_rows = np.flatnonzero(meta['is_sdc'])
  if len(sdc_rows):
    row = sdc_rows[0]
    if valid[row, t_now]:
      return xy[row, t_now]
    if valid[row].any():
      return xy[row, np.argmax(valid[row])]
  if valid.any():
    return xy[valid].mean(axis=0)
  return np.zeros(2, np.float32)


def select_object_indices(raw: RawScenario, max_num_objects: int) -> np.ndarray:
  """Rows to keep, ``(min(N, max_num_objects),)`` in increasing (record) order.

  Ranks SDC < modeled < objects of interest < other valid objects (nearest to the SDC
  first, using each object's closest valid step) < everything else (record order).
  """
  meta, traj = raw.metadata, raw.trajectory
  n = len(meta['ids'])
  if n <= max_num_objects:
    return np.arange(n)
  has_state = traj['valid'].any(axis=-1) & meta['is_valid']
  group = np.full(n, _OTHER)
  group[has_state] = _VALID
  group[meta['objects_of_interest'] & meta['is_valid']] = _INTEREST
  group[meta['is_modeled']] = _MODELED
  group[meta['is_sdc']] = _SDC
  ref = sdc_reference_xy(raw)
  dist = np.hypot(traj['x'] - ref[0], traj['y'] - ref[1])
  dist = np.where(traj['valid'], dist, np.inf).min(axis=-1)
  dist = np.where(group == _VALID, dist, 0.0)
  order = np.lexsort((np.arange(n), dist, group))  # last key is the primary one
  return np.sort(order[:max_num_objects])


def cap_roadgraph_indices(raw: RawScenario, max_num_points: int) -> np.ndarray:
  """Map points to keep, ``(min(P, max_num_points),)`` in increasing (record) order.

  When every valid point fits, keeps all of them plus the earliest invalid slots.
  Otherwise road edges come first (nearest to the SDC if even they do not all fit),
  then the remaining valid points nearest to the SDC.
  """
  rg = raw.roadgraph
  p = len(rg['x'])
  if p <= max_num_points:
    return np.arange(p)
  valid = rg['valid']
  is_edge = np.isin(rg['types'], _EDGE_TYPES) & valid
  ref = sdc_reference_xy(raw)
  dist = np.hypot(rg['x'] - ref[0], rg['y'] - ref[1]).astype(np.float64)
  if int(valid.sum()) <= max_num_points:
    dist = np.zeros(p)  # everything valid fits: keep invalid slots in record order
  group = np.where(is_edge, 0, np.where(valid, 1, 2))
  order = np.lexsort((np.arange(p), dist, group))
  return np.sort(order[:max_num_points])


def _pad_rows(arr: np.ndarray, size: int, fill) -> np.ndarray:
  """Pads (or keeps) the first axis of ``arr`` to ``size`` rows with ``fill``."""
  if arr.shape[0] == size:
    return arr
  out = np.full((size,) + arr.shape[1:], fill, arr.dtype)
  out[:arr.shape[0]] = arr
  return out


def raw_to_state(raw: RawScenario, max_num_objects: int, max_num_rg_points: int
                 ) -> SimulatorState:
  """Selects, pads and validates: the state a WOMD loader returns.

  Args:
    raw: a decoded record.
    max_num_objects: object slots of the state (128 for WOMD's full tf.Example).
    max_num_rg_points: roadgraph slots (20000 for WOMD 1.0/1.1, 30000 for 1.2).

  Returns:
    A ``SimulatorState`` with host numpy leaves, unbatched: ``timestep`` 0 and
    ``sim_trajectory`` a copy of ``log_trajectory`` (Waymax's loader convention);
    trajectory entries that are invalid hold -1; ``is_controlled`` is all False (the
    environment's ``reset`` decides it).

  Raises:
    RecordError: naming the datatype field when ``validate()`` rejects the result.
  """
  rows = select_object_indices(raw, max_num_objects)
  traj = {}
  valid = _pad_rows(raw.trajectory['valid'][rows], max_num_objects, False)
  for name in TRAJECTORY_FLOATS:
    arr = _pad_rows(raw.trajectory[name][rows].astype(np.float32), max_num_objects,
                    INVALID_FLOAT)
    traj[name] = np.where(valid, arr, np.float32(INVALID_FLOAT))
  stamps = _pad_rows(raw.trajectory['timestamp_micros'][rows].astype(np.int32),
                     max_num_objects, INVALID_INT)
  traj['timestamp_micros'] = np.where(valid, stamps, np.int32(INVALID_INT))
  log = Trajectory(valid=valid, **traj)

  meta = raw.metadata
  metadata = ObjectMetadata(
      ids=_pad_rows(meta['ids'][rows].astype(np.int32), max_num_objects, INVALID_INT),
      object_types=_pad_rows(meta['object_types'][rows].astype(np.int32),
                             max_num_objects, 0),
      is_controlled=np.zeros(max_num_objects, bool),
      **{n: _pad_rows(meta[n][rows].astype(bool), max_num_objects, False)
         for n in METADATA_BOOLS})

  points = cap_roadgraph_indices(raw, max_num_rg_points)
  rg = raw.roadgraph
  rg_fields = {n: _pad_rows(rg[n][points].astype(np.float32), max_num_rg_points,
                            INVALID_FLOAT) for n in ROADGRAPH_FLOATS}
  roadgraph = RoadgraphPoints(
      types=_pad_rows(rg['types'][points].astype(np.int32), max_num_rg_points,
                      INVALID_INT),
      ids=_pad_rows(rg['ids'][points].astype(np.int32), max_num_rg_points, INVALID_INT),
      valid=_pad_rows(rg['valid'][points].astype(bool), max_num_rg_points, False),
      **rg_fields)

  tl = raw.traffic_lights
  lights = TrafficLights(
      x=tl['x'].astype(np.float32), y=tl['y'].astype(np.float32),
      z=tl['z'].astype(np.float32), state=tl['state'].astype(np.int32),
      lane_ids=tl['lane_ids'].astype(np.int32), valid=tl['valid'].astype(bool))

  paths = None
  if raw.paths is not None:
    paths = Paths(**raw.paths)

  state = SimulatorState(
      sim_trajectory=log, log_trajectory=log, log_traffic_light=lights,
      object_metadata=metadata, timestep=np.asarray(0, np.int32),
      roadgraph_points=roadgraph, sdc_paths=paths)
  try:
    state.validate()
  except DataValidationError as e:
    raise from_validation_error(e) from e
  if int(metadata.is_sdc.sum()) != 1:
    raise RecordError(f'expected exactly one SDC among the kept objects, found '
                      f'{int(metadata.is_sdc.sum())}', field='ObjectMetadata.is_sdc')
  return state


def check_finite(values: np.ndarray, valid: np.ndarray, field: str) -> None:
  """Raises ``RecordError`` naming ``field`` and the index of a NaN/inf valid entry."""
  bad = ~np.isfinite(values) & np.broadcast_to(valid, values.shape)
  if bad.any():
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    raise RecordError(f'non-finite value {values[index]} at index {index} of a valid '
                      'entry', field=field)
