"""WOSAC submissions: ``SimAgentsChallengeSubmission`` protos without Waymo's package.

A small protobuf wire-format codec for the four submission messages, with the public
field numbers (``shared/specs/wosac.md``; proto2, repeated numeric fields packed)::

  SimulatedTrajectory  center_x 2, center_y 3, center_z 4, heading 5 (packed float),
                       object_id 6 (int32), width 7, length 8, height 9 (packed float),
                       object_type 10 (enum), valid 11 (packed bool)
  JointScene           simulated_trajectories 1
  ScenarioRollouts     scenario_id 1, joint_scenes 2
  SimAgentsChallengeSubmission  scenario_rollouts 1, submission_type 2, account_name 3,
                       unique_method_name 4, authors 5, affiliation 6, description 7,
                       method_link 8, uses_lidar_data 9, uses_camera_data 10,
                       uses_public_model_pretraining 11, num_model_parameters 12,
                       public_model_names 13,
                       acknowledge_complies_with_closed_loop_requirement 14

The bytes parse with the official ``sim_agents_submission_pb2`` (and vice versa: the
decoder also accepts unpacked repeated fields and skips unknown ones). Rollouts are
held as arrays, :class:`ScenarioRollouts` ``(R, A, 80)``. ``rollouts_to_submission``
builds them from simulator trajectories (every object valid at step 10 is a sim agent,
as the challenge requires), ``submission_to_rollouts`` maps them back onto a state's
object slots, and ``write_scenarios`` exports the scenarios themselves as WOMD
``Scenario`` records so that the official evaluator can score the files.
``encode_submission_entry`` and ``encode_metadata`` are the two halves of a submission,
for writing a large one a scenario at a time (``spacer_jax.apps.export_wosac``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Optional

import jax
import numpy as np

from spacer_jax.sim.datatypes import INIT_STEPS, SimulatorState, Trajectory

SIM_AGENTS_SUBMISSION = 1  # SimAgentsChallengeSubmission.SubmissionType
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_FLOAT_FIELDS = {'center_x': 2, 'center_y': 3, 'center_z': 4, 'heading': 5}
_BOX_FIELDS = {'width': 7, 'length': 8, 'height': 9}
_OBJECT_ID, _OBJECT_TYPE, _VALID = 6, 10, 11


class SubmissionError(ValueError):
  """Malformed submission bytes or inconsistent rollouts; the message names the field."""


# -- wire format ------------------------------------------------------------------------


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1  # negative int32/int64: ten-byte two's complement
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
  return _varint((field << 3) | wire_type)


def _len_field(field: int, payload: bytes) -> bytes:
  return _key(field, _LEN) + _varint(len(payload)) + payload


def _read_varint(data: bytes, pos: int, where: str) -> tuple[int, int]:
  result, shift = 0, 0
  while True:
    if pos >= len(data) or shift > 63:
      raise SubmissionError(f'{where}: truncated or overlong varint at byte {pos}')
    byte = data[pos]
    pos += 1
    result |= (byte & 0x7F) << shift
    if not byte & 0x80:
      return result, pos
    shift += 7


def _fields(data: bytes, where: str) -> Iterator[tuple[int, int, object]]:
  """Yields ``(field number, wire type, value)``: int for varints, bytes otherwise."""
  pos = 0
  while pos < len(data):
    key, pos = _read_varint(data, pos, where)
    field, wire_type = key >> 3, key & 7
    if wire_type == _VARINT:
      value, pos = _read_varint(data, pos, where)
    elif wire_type in (_I64, _I32):
      size = 8 if wire_type == _I64 else 4
      value, pos = data[pos:pos + size], pos + size
    elif wire_type == _LEN:
      size, pos = _read_varint(data, pos, where)
      value, pos = data[pos:pos + size], pos + size
    else:
      raise SubmissionError(f'{where}: unsupported wire type {wire_type} (field {field})')
    if pos > len(data):
      raise SubmissionError(f'{where}: field {field} runs past the end of the message')
    yield field, wire_type, value


def _signed32(value: int) -> int:
  value &= (1 << 64) - 1
  return value - (1 << 64) if value >= 1 << 63 else value


# -- data -------------------------------------------------------------------------------


@dataclasses.dataclass
class ScenarioRollouts:
  """The joint rollouts of one scenario, as arrays.

  Attributes:
    scenario_id: the WOMD scenario id.
    object_ids: ``(A,)`` int32 track ids, the same objects in every rollout.
    center_x, center_y, center_z, heading: ``(R, A, T)`` float32 (T = 80), metres and
      radians.
    length, width, height: optional ``(R, A, T)`` float32 box sizes.
    valid: optional ``(R, A, T)`` bool.
    object_types: optional ``(A,)`` int32 (1 vehicle, 2 pedestrian, 3 cyclist).
  """

  scenario_id: str
  object_ids: np.ndarray
  center_x: np.ndarray
  center_y: np.ndarray
  center_z: np.ndarray
  heading: np.ndarray
  length: Optional[np.ndarray] = None
  width: Optional[np.ndarray] = None
  height: Optional[np.ndarray] = None
  valid: Optional[np.ndarray] = None
  object_types: Optional[np.ndarray] = None

  def __post_init__(self):
    self.object_ids = np.asarray(self.object_ids, np.int32).reshape(-1)
    shape = np.shape(self.center_x)
    if len(shape) != 3 or shape[1] != len(self.object_ids):
      raise SubmissionError(f'ScenarioRollouts {self.scenario_id!r}: center_x has shape '
                            f'{shape}, expected (R, {len(self.object_ids)}, T).')
    for name in ('center_x', 'center_y', 'center_z', 'heading', 'length', 'width',
                 'height', 'valid'):
      value = getattr(self, name)
      if value is None:
        continue
      value = np.asarray(value, bool if name == 'valid' else np.float32)
      if value.shape != shape:
        raise SubmissionError(f'ScenarioRollouts {self.scenario_id!r}: {name} has shape '
                              f'{value.shape}, expected {shape}.')
      setattr(self, name, value)
    if self.object_types is not None:
      self.object_types = np.asarray(self.object_types, np.int32).reshape(-1)
      if self.object_types.shape != self.object_ids.shape:
        raise SubmissionError(f'ScenarioRollouts {self.scenario_id!r}: object_types has '
                              f'shape {self.object_types.shape}, expected '
                              f'{self.object_ids.shape}.')

  @property
  def num_rollouts(self) -> int:
    return self.center_x.shape[0]


@dataclasses.dataclass(frozen=True)
class SubmissionMetadata:
  """Submission-level fields (the leaderboard requires the booleans and the size)."""

  account_name: str = ''
  unique_method_name: str = ''
  authors: tuple[str, ...] = ()
  affiliation: str = ''
  description: str = ''
  method_link: str = ''
  uses_lidar_data: bool = False
  uses_camera_data: bool = False
  uses_public_model_pretraining: bool = False
  num_model_parameters: str = ''
  public_model_names: tuple[str, ...] = ()
  acknowledge_complies_with_closed_loop_requirement: bool = False
  submission_type: int = SIM_AGENTS_SUBMISSION


_META_STRINGS = {'account_name': 3, 'unique_method_name': 4, 'affiliation': 6,
                 'description': 7, 'method_link': 8, 'num_model_parameters': 12}
_META_LISTS = {'authors': 5, 'public_model_names': 13}
_META_BOOLS = {'uses_lidar_data': 9, 'uses_camera_data': 10,
               'uses_public_model_pretraining': 11,
               'acknowledge_complies_with_closed_loop_requirement': 14}


# -- encoding ---------------------------------------------------------------------------


def _encode_trajectory(rollouts: ScenarioRollouts, r: int, a: int) -> bytes:
  parts = []
  for name, number in _FLOAT_FIELDS.items():
    parts.append(_len_field(number, getattr(rollouts, name)[r, a].astype('<f4').tobytes()))
  parts.append(_key(_OBJECT_ID, _VARINT) + _varint(int(rollouts.object_ids[a])))
  for name, number in _BOX_FIELDS.items():
    value = getattr(rollouts, name)
    if value is not None:
      parts.append(_len_field(number, value[r, a].astype('<f4').tobytes()))
  if rollouts.object_types is not None:
    parts.append(_key(_OBJECT_TYPE, _VARINT) + _varint(int(rollouts.object_types[a])))
  if rollouts.valid is not None:
    parts.append(_len_field(_VALID, rollouts.valid[r, a].astype(np.uint8).tobytes()))
  return b''.join(parts)


def encode_scenario_rollouts(rollouts: ScenarioRollouts) -> bytes:
  """Serialized ``ScenarioRollouts`` message."""
  scenes = []
  for r in range(rollouts.num_rollouts):
    scene = b''.join(_len_field(1, _encode_trajectory(rollouts, r, a))
                     for a in range(len(rollouts.object_ids)))
    scenes.append(_len_field(2, scene))
  return _len_field(1, rollouts.scenario_id.encode()) + b''.join(scenes)


def encode_submission(scenario_rollouts: Sequence[ScenarioRollouts],
                      metadata: SubmissionMetadata = SubmissionMetadata()) -> bytes:
  """Serialized ``SimAgentsChallengeSubmission``."""
  return (b''.join(encode_submission_entry(s) for s in scenario_rollouts)
          + encode_metadata(metadata))


def encode_submission_entry(rollouts: ScenarioRollouts) -> bytes:
  """One scenario as a ``scenario_rollouts`` field of the submission message.

  A submission is these entries and :func:`encode_metadata` concatenated (protobuf
  fields may come in any order), so a large export can stream one scenario at a time.
  """
  return _len_field(1, encode_scenario_rollouts(rollouts))


def encode_metadata(metadata: SubmissionMetadata = SubmissionMetadata()) -> bytes:
  """The submission-level fields of ``SimAgentsChallengeSubmission`` (no rollouts)."""
  parts = [_key(2, _VARINT) + _varint(metadata.submission_type)]
  for name, number in _META_STRINGS.items():
    if getattr(metadata, name):
      parts.append(_len_field(number, getattr(metadata, name).encode()))
  for name, number in _META_LISTS.items():
    parts.extend(_len_field(number, v.encode()) for v in getattr(metadata, name))
  for name, number in _META_BOOLS.items():
    parts.append(_key(number, _VARINT) + _varint(int(getattr(metadata, name))))
  return b''.join(parts)


# -- decoding ---------------------------------------------------------------------------


def _floats(chunks: list[tuple[int, object]], where: str) -> np.ndarray:
  out = []
  for wire_type, value in chunks:
    if wire_type == _LEN:
      if len(value) % 4:
        raise SubmissionError(f'{where}: packed float length {len(value)} is not a '
                              'multiple of 4')
      out.append(np.frombuffer(value, '<f4'))
    elif wire_type == _I32:
      out.append(np.frombuffer(value, '<f4'))
    else:
      raise SubmissionError(f'{where}: wire type {wire_type}, expected float')
  return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def _bools(chunks: list[tuple[int, object]], where: str) -> np.ndarray:
  out = []
  for wire_type, value in chunks:
    if wire_type == _LEN:  # packed varints; bools are single bytes 0/1
      pos, vals = 0, []
      while pos < len(value):
        v, pos = _read_varint(value, pos, where)
        vals.append(v != 0)
      out.append(np.array(vals, bool))
    elif wire_type == _VARINT:
      out.append(np.array([value != 0]))
    else:
      raise SubmissionError(f'{where}: wire type {wire_type}, expected bool')
  return np.concatenate(out) if out else np.zeros(0, bool)


def _decode_trajectory(data: bytes, where: str) -> dict:
  chunks: dict[int, list] = {}
  for field, wire_type, value in _fields(data, where):
    chunks.setdefault(field, []).append((wire_type, value))
  out = {'object_id': None, 'object_type': None}
  for name, number in {**_FLOAT_FIELDS, **_BOX_FIELDS}.items():
    out[name] = (_floats(chunks[number], f'{where}.{name}') if number in chunks else None)
  for name, number in (('object_id', _OBJECT_ID), ('object_type', _OBJECT_TYPE)):
    if number in chunks:
      out[name] = _signed32(chunks[number][-1][1])
  out['valid'] = _bools(chunks[_VALID], f'{where}.valid') if _VALID in chunks else None
  if out['object_id'] is None:
    raise SubmissionError(f'{where}: missing object_id')
  return out


def _stack(per_scene: list[list[dict]], name: str, where: str) -> Optional[np.ndarray]:
  present = [t[name] is not None for scene in per_scene for t in scene]
  if not any(present):
    return None
  if not all(present):
    raise SubmissionError(f'{where}: {name} is set for some trajectories only')
  try:
    return np.stack([np.stack([t[name] for t in scene]) for scene in per_scene])
  except ValueError as e:
    raise SubmissionError(f'{where}: {name} has trajectories of different lengths') from e


def decode_scenario_rollouts(data: bytes, where: str = 'ScenarioRollouts'
                             ) -> ScenarioRollouts:
  """Parses a serialized ``ScenarioRollouts`` (objects ordered as in the first scene)."""
  scenario_id, scenes = '', []
  for field, wire_type, value in _fields(data, where):
    if field == 1 and wire_type == _LEN:
      scenario_id = value.decode()
    elif field == 2 and wire_type == _LEN:
      k = len(scenes)
      trajs = [_decode_trajectory(v, f'{where}.joint_scenes[{k}].'
                                     f'simulated_trajectories[{i}]')
               for i, (f, w, v) in enumerate(_fields(value, f'{where}.joint_scenes[{k}]'))
               if f == 1 and w == _LEN]
      scenes.append(trajs)
  where = f'{where} {scenario_id!r}'
  if not scenes:
    raise SubmissionError(f'{where}: no joint_scenes')
  ids = [t['object_id'] for t in scenes[0]]
  if len(set(ids)) != len(ids):
    raise SubmissionError(f'{where}: joint_scenes[0] repeats an object_id')
  ordered = []
  for k, scene in enumerate(scenes):
    by_id = {t['object_id']: t for t in scene}
    if sorted(by_id) != sorted(ids) or len(scene) != len(ids):
      raise SubmissionError(f'{where}: joint_scenes[{k}] simulates objects '
                            f'{sorted(by_id)}, joint_scenes[0] {sorted(ids)}')
    ordered.append([by_id[i] for i in ids])
  types = [t['object_type'] for t in ordered[0]]
  arrays = {n: _stack(ordered, n, where) for n in (*_FLOAT_FIELDS, *_BOX_FIELDS, 'valid')}
  for name in _FLOAT_FIELDS:
    if arrays[name] is None:
      raise SubmissionError(f'{where}: missing {name}')
  return ScenarioRollouts(
      scenario_id=scenario_id, object_ids=np.array(ids, np.int32),
      object_types=None if None in types else np.array(types, np.int32), **arrays)


def decode_submission(data: bytes) -> tuple[list[ScenarioRollouts], SubmissionMetadata]:
  """Parses a serialized ``SimAgentsChallengeSubmission``."""
  rollouts, meta = [], {'authors': [], 'public_model_names': []}
  strings = {v: k for k, v in _META_STRINGS.items()}
  lists = {v: k for k, v in _META_LISTS.items()}
  bools = {v: k for k, v in _META_BOOLS.items()}
  for field, wire_type, value in _fields(data, 'SimAgentsChallengeSubmission'):
    if field == 1 and wire_type == _LEN:
      rollouts.append(decode_scenario_rollouts(value, f'scenario_rollouts[{len(rollouts)}]'))
    elif field == 2 and wire_type == _VARINT:
      meta['submission_type'] = value
    elif field in strings and wire_type == _LEN:
      meta[strings[field]] = value.decode()
    elif field in lists and wire_type == _LEN:
      meta[lists[field]].append(value.decode())
    elif field in bools and wire_type == _VARINT:
      meta[bools[field]] = bool(value)
  meta = {k: tuple(v) if isinstance(v, list) else v for k, v in meta.items()}
  return rollouts, SubmissionMetadata(**meta)


def write_submission(path: str, scenario_rollouts: Sequence[ScenarioRollouts],
                     metadata: SubmissionMetadata = SubmissionMetadata()) -> int:
  """Writes one binary ``SimAgentsChallengeSubmission`` file; returns its size in bytes.

  The leaderboard takes a tar.gz of such files (shards of the test set).
  """
  data = encode_submission(scenario_rollouts, metadata)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(data)
  return len(data)


def read_submission(path: str) -> tuple[list[ScenarioRollouts], SubmissionMetadata]:
  """Reads a file written by :func:`write_submission` (or by Waymo's tools)."""
  with open(path, 'rb') as f:
    return decode_submission(f.read())


# -- simulator <-> submission -----------------------------------------------------------


def _unbatched(state: SimulatorState, index: tuple[int, ...]) -> SimulatorState:
  return jax.tree_util.tree_map(lambda v: np.asarray(v)[index], state)


def rollouts_to_submission(log_state: SimulatorState, rollouts: Trajectory,
                           scenario_ids: Sequence[str] | str,
                           include_optional_fields: bool = False
                           ) -> list[ScenarioRollouts]:
  """Simulator rollouts -> one :class:`ScenarioRollouts` per scenario.

  Args:
    log_state: batch shape ``(...)`` (``()`` or ``(B,)`` typically).
    rollouts: ``(R, ..., N, 80)`` future steps or ``(R, ..., N, 91)`` episodes; ``x, y,
      z, yaw`` are exported (and sizes/validity with ``include_optional_fields``).
    scenario_ids: one id per scenario (flattened batch order), or one string for an
      unbatched state.
    include_optional_fields: also write width/length/height/valid/object_type (the
      2025 proto's optional fields; the sim-agents challenge ignores them).

  Returns:
    A list in flattened batch order; sim agents are the objects valid at step 10.
  """
  log = log_state.log_trajectory
  batch, t_log = tuple(log.shape[:-2]), log.num_timesteps
  t_future = t_log - INIT_STEPS
  shape = tuple(rollouts.x.shape)
  if shape[1:-1] != batch + (log.num_objects,) or shape[-1] not in (t_future, t_log):
    raise SubmissionError(f'rollouts have shape {shape}, expected (R,) + {batch} + '
                          f'({log.num_objects}, {t_future} or {t_log}).')
  ids = [scenario_ids] if isinstance(scenario_ids, str) else list(scenario_ids)
  num = int(np.prod(batch)) if batch else 1
  if len(ids) != num:
    raise SubmissionError(f'{len(ids)} scenario_ids for {num} scenarios.')
  fields = {n: np.asarray(getattr(rollouts, n))[..., -t_future:]
            for n in ('x', 'y', 'z', 'yaw', 'length', 'width', 'height', 'valid')}
  out = []
  for k, index in enumerate(np.ndindex(*batch) if batch else [()]):
    state = _unbatched(log_state, index)
    sim = np.asarray(state.log_trajectory.valid)[:, INIT_STEPS - 1] & np.asarray(
        state.object_metadata.is_valid)
    rows = np.flatnonzero(sim)
    pick = {n: v[(slice(None),) + index][:, rows] for n, v in fields.items()}
    extra = {}
    if include_optional_fields:
      extra = dict(length=pick['length'], width=pick['width'], height=pick['height'],
                   valid=pick['valid'],
                   object_types=np.asarray(state.object_metadata.object_types)[rows])
    out.append(ScenarioRollouts(
        scenario_id=ids[k], object_ids=np.asarray(state.object_metadata.ids)[rows],
        center_x=pick['x'], center_y=pick['y'], center_z=pick['z'], heading=pick['yaw'],
        **extra))
  return out


def submission_to_rollouts(scenario_rollouts: ScenarioRollouts,
                           log_state: SimulatorState) -> Trajectory:
  """Maps one scenario's rollouts onto the object slots of its unbatched state.

  Returns:
    :class:`Trajectory` ``(R, N, T)`` (numpy leaves): the submitted poses where the
    object was submitted (``valid`` True), the log elsewhere (``valid`` False); sizes
    from the log at step 10. Pass it to ``compute_realism``.

  Raises:
    SubmissionError: an object id that is not in the state.
  """
  log = _log_arrays(log_state)
  r, t_future = scenario_rollouts.center_x.shape[0], scenario_rollouts.center_x.shape[2]
  ids = np.asarray(log_state.object_metadata.ids)
  valid_slots = np.asarray(log_state.object_metadata.is_valid)
  row_of = {int(i): k for k, i in enumerate(ids) if valid_slots[k]}
  missing = [int(i) for i in scenario_rollouts.object_ids if int(i) not in row_of]
  if missing:
    raise SubmissionError(f'ScenarioRollouts {scenario_rollouts.scenario_id!r}: object '
                          f'ids {missing} are not in the state.')
  rows = np.array([row_of[int(i)] for i in scenario_rollouts.object_ids], np.int64)
  n = ids.shape[0]
  tail = lambda v: np.broadcast_to(v[:, -t_future:], (r, n, t_future)).copy()
  out = {name: tail(log[name]) for name in log}
  for name, src in (('x', 'center_x'), ('y', 'center_y'), ('z', 'center_z'),
                    ('yaw', 'heading')):
    out[name][:, rows] = getattr(scenario_rollouts, src)
  for name in ('length', 'width', 'height'):
    out[name] = np.broadcast_to(log[name][:, INIT_STEPS - 1:INIT_STEPS],
                                (r, n, t_future)).copy()
  valid = np.zeros((r, n, t_future), bool)
  valid[:, rows] = True
  out['valid'] = valid
  return Trajectory(**out)


def _log_arrays(state: SimulatorState) -> dict[str, np.ndarray]:
  log = state.log_trajectory
  return {f.name: np.asarray(getattr(log, f.name)) for f in dataclasses.fields(log)}


def write_scenarios(path: str, states: SimulatorState | Sequence[SimulatorState],
                    scenario_ids: Sequence[str] | str) -> int:
  """Writes unbatched states (or a batch) as WOMD ``Scenario`` TFRecords; returns count.

  The official evaluator reads these with the submission. Map points are written as
  polylines of the (resampled) roadgraph.
  """
  from spacer_jax.data.womd import state_to_scenario_bytes, write_records

  if isinstance(states, SimulatorState):
    batch = tuple(np.shape(states.timestep))
    states = [_unbatched(states, i) for i in (np.ndindex(*batch) if batch else [()])]
  ids = [scenario_ids] if isinstance(scenario_ids, str) else list(scenario_ids)
  if len(ids) != len(states):
    raise SubmissionError(f'{len(ids)} scenario_ids for {len(states)} scenarios.')
  return write_records(path, (state_to_scenario_bytes(s, i) for s, i in zip(states, ids)))

