"""Host-side constructors: plain numpy arrays -> padded simulator datatypes.

Scenario sources (the procedural generator, WOMD readers, tests) describe a scene as
polylines and per-object arrays of any length; these functions resample, pad to the
fixed sizes the compiled simulator expects and fill Waymax's invalid conventions.
They run once per scenario on the host, never inside a compiled step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from spacer_jax.sim.datatypes import (
    INVALID_FLOAT,
    INVALID_INT,
    NUM_TRAFFIC_LIGHTS,
    TIMESTEP_MICROS,
    DataValidationError,
    ObjectMetadata,
    RoadgraphPoints,
    SimulatorState,
    TrafficLights,
    Trajectory,
)


@dataclass(frozen=True)
class Polyline:
  """One map feature: ``xyz`` is ``(P, 3)`` (or ``(P, 2)``, z = 0) in metres."""

  xyz: np.ndarray
  type: int
  id: int


def _polyline_xyz(xyz: np.ndarray) -> np.ndarray:
  """``(P, 3)`` float64 of a polyline ``(P, 2|3)`` (z = 0 when absent)."""
  xyz = np.asarray(xyz, np.float64)
  if xyz.ndim != 2 or xyz.shape[1] not in (2, 3):
    raise DataValidationError(f'polyline has shape {xyz.shape}, expected (P, 2|3).')
  if xyz.shape[1] == 2:
    xyz = np.concatenate([xyz, np.zeros((len(xyz), 1))], axis=1)
  return xyz


def resample_polyline(xyz: np.ndarray, spacing: float = 0.5) -> np.ndarray:
  """Resamples a polyline ``(P, 2|3)`` to points about ``spacing`` metres apart.

  Keeps both end points; a single point is returned unchanged.
  """
  xyz = _polyline_xyz(xyz)
  if len(xyz) < 2:
    return xyz
  seg = np.linalg.norm(np.diff(xyz[:, :2], axis=0), axis=1)
  arc = np.concatenate([[0.0], np.cumsum(seg)])
  if arc[-1] <= 0:
    return xyz[:1]
  n = max(int(np.ceil(arc[-1] / spacing)), 1) + 1
  s = np.linspace(0.0, arc[-1], n)
  return np.stack([np.interp(s, arc, xyz[:, i]) for i in range(3)], axis=1)


def subdivide_polyline(xyz: np.ndarray, max_spacing: float = 0.5) -> np.ndarray:
  """A polyline ``(P, 2|3)`` with points inserted on its own segments so that no segment
  is longer than ``max_spacing`` metres (planar length).

  Unlike :func:`resample_polyline` every recorded vertex is kept, in order, and the
  inserted points lie on the segment they split (evenly spaced), so the geometry is
  the recorded one: corners are not cut. Duplicate consecutive vertices are kept.
  """
  if not max_spacing > 0:
    raise ValueError(f'max_spacing must be > 0, got {max_spacing}.')
  xyz = _polyline_xyz(xyz)
  if len(xyz) < 2:
    return xyz
  seg = np.linalg.norm(np.diff(xyz[:, :2], axis=0), axis=1)
  pieces = np.maximum(np.ceil(seg / max_spacing - 1e-9), 1).astype(int)
  parts = []
  for a, b, k in zip(xyz[:-1], xyz[1:], pieces):
    f = np.arange(k)[:, None] / k
    parts.append(a + f * (b - a))
  parts.append(xyz[-1:])
  return np.concatenate(parts)


def roadgraph_from_polylines(polylines: Sequence[Polyline], num_points: int,
                             spacing: float | None = 0.5) -> RoadgraphPoints:
  """Builds padded ``RoadgraphPoints`` ``(num_points,)`` from polylines.

  ``dir`` is the unit vector to the next point of the same polyline (zero at its last
  point, as in WOMD). Polylines are resampled to ``spacing`` metres unless it is None.

  Raises:
    DataValidationError: if the points do not fit in ``num_points``.
  """
  xyz, dirs, types, ids = [], [], [], []
  for line in polylines:
    pts = resample_polyline(line.xyz, spacing) if spacing else np.asarray(line.xyz)
    if pts.shape[1] == 2:
      pts = np.concatenate([pts, np.zeros((len(pts), 1))], axis=1)
    d = np.zeros_like(pts)
    if len(pts) > 1:
      diff = np.diff(pts, axis=0)
      norm = np.linalg.norm(diff, axis=1, keepdims=True)
      d[:-1] = np.where(norm > 0, diff / np.maximum(norm, 1e-12), 0.0)
    xyz.append(pts)
    dirs.append(d)
    types.append(np.full(len(pts), line.type))
    ids.append(np.full(len(pts), line.id))
  total = int(sum(len(p) for p in xyz))
  if total > num_points:
    raise DataValidationError(
        f'roadgraph has {total} points after resampling, more than num_points='
        f'{num_points}; raise num_points or cap the map first.')
  def pad(parts, fill, dtype, width=None):
    shape = (num_points,) if width is None else (num_points, width)
    out = np.full(shape, fill, dtype)
    if parts:
      cat = np.concatenate(parts)
      out[:len(cat)] = cat
    return out
  xyz_a = pad(xyz, INVALID_FLOAT, np.float32, 3)
  dir_a = pad(dirs, INVALID_FLOAT, np.float32, 3)
  valid = np.zeros(num_points, bool)
  valid[:total] = True
  return RoadgraphPoints(
      x=jnp.asarray(xyz_a[:, 0]), y=jnp.asarray(xyz_a[:, 1]), z=jnp.asarray(xyz_a[:, 2]),
      dir_x=jnp.asarray(dir_a[:, 0]), dir_y=jnp.asarray(dir_a[:, 1]),
      dir_z=jnp.asarray(dir_a[:, 2]),
      types=jnp.asarray(pad(types, INVALID_INT, np.int32)),
      ids=jnp.asarray(pad(ids, INVALID_INT, np.int32)),
      valid=jnp.asarray(valid))


def trajectory_from_arrays(
    x: np.ndarray, y: np.ndarray, yaw: np.ndarray, valid: np.ndarray,
    length: np.ndarray, width: np.ndarray, height: np.ndarray | None = None,
    z: np.ndarray | None = None, vel_x: np.ndarray | None = None,
    vel_y: np.ndarray | None = None, num_objects: int | None = None,
    start_micros: int = 0) -> Trajectory:
  """Builds a ``Trajectory`` ``(num_objects, T)`` from ``(N, T)`` arrays.

  Sizes may be ``(N,)`` (constant) or ``(N, T)``. Velocities default to the central
  finite difference of the positions at 10 Hz. Rows beyond N up to ``num_objects`` are
  invalid padding; invalid entries are filled with -1.
  """
  x = np.asarray(x, np.float64)
  n, t = x.shape
  num_objects = n if num_objects is None else num_objects
  if n > num_objects:
    raise DataValidationError(f'{n} objects do not fit in num_objects={num_objects}.')
  valid = np.asarray(valid, bool)
  y = np.asarray(y, np.float64)
  if vel_x is None or vel_y is None:
    vel_x = np.gradient(x, 0.1, axis=1) if t > 1 else np.zeros_like(x)
    vel_y = np.gradient(y, 0.1, axis=1) if t > 1 else np.zeros_like(y)
  def full(a, default=0.0):
    a = np.asarray(default if a is None else a, np.float64)
    return np.broadcast_to(a[:, None] if a.ndim == 1 else a, (n, t))
  fields = dict(x=x, y=y, z=full(z), vel_x=full(vel_x), vel_y=full(vel_y),
                yaw=full(yaw), length=full(length), width=full(width),
                height=full(1.5 if height is None else height))
  out = {}
  for name, arr in fields.items():
    padded = np.full((num_objects, t), INVALID_FLOAT, np.float32)
    padded[:n] = np.where(valid, arr, INVALID_FLOAT)
    out[name] = jnp.asarray(padded)
  valid_p = np.zeros((num_objects, t), bool)
  valid_p[:n] = valid
  stamps = np.full((num_objects, t), INVALID_INT, np.int32)
  stamps[:n] = np.where(valid, start_micros + np.arange(t) * TIMESTEP_MICROS, INVALID_INT)
  return Trajectory(valid=jnp.asarray(valid_p), timestamp_micros=jnp.asarray(stamps),
                    **out)


def metadata_from_arrays(object_types: np.ndarray, num_objects: int | None = None,
                         sdc_index: int | None = 0,
                         is_modeled: np.ndarray | None = None,
                         ids: np.ndarray | None = None,
                         objects_of_interest: np.ndarray | None = None
                         ) -> ObjectMetadata:
  """Builds ``ObjectMetadata`` ``(num_objects,)`` for N real objects (rest padding)."""
  types = np.asarray(object_types, np.int32)
  n = len(types)
  num_objects = n if num_objects is None else num_objects
  def pad(a, fill, dtype):
    out = np.full(num_objects, fill, dtype)
    out[:n] = a
    return jnp.asarray(out)
  is_sdc = np.zeros(n, bool)
  if sdc_index is not None:
    is_sdc[sdc_index] = True
  modeled = np.zeros(n, bool) if is_modeled is None else np.asarray(is_modeled, bool)
  interest = (np.zeros(n, bool) if objects_of_interest is None
              else np.asarray(objects_of_interest, bool))
  return ObjectMetadata(
      ids=pad(np.arange(n) if ids is None else ids, -1, np.int32),
      object_types=pad(types, 0, np.int32),
      is_sdc=pad(is_sdc, False, bool), is_modeled=pad(modeled, False, bool),
      is_valid=pad(np.ones(n, bool), False, bool),
      objects_of_interest=pad(interest, False, bool),
      is_controlled=pad(np.zeros(n, bool), False, bool))


def traffic_lights_from_arrays(x: np.ndarray, y: np.ndarray, state: np.ndarray,
                               lane_ids: np.ndarray, valid: np.ndarray,
                               z: np.ndarray | None = None,
                               num_lights: int = NUM_TRAFFIC_LIGHTS) -> TrafficLights:
  """Builds ``TrafficLights`` ``(num_lights, T)`` from ``(L, T)`` arrays (L <= 16)."""
  state = np.asarray(state)
  n, t = state.shape
  if n > num_lights:
    raise DataValidationError(f'{n} traffic lights do not fit in num_lights={num_lights}.')
  valid = np.asarray(valid, bool)
  def pad(a, fill, dtype):
    out = np.full((num_lights, t), fill, dtype)
    out[:n] = np.where(valid, np.broadcast_to(a, (n, t)), fill)
    return jnp.asarray(out)
  return TrafficLights(
      x=pad(x, INVALID_FLOAT, np.float32), y=pad(y, INVALID_FLOAT, np.float32),
      z=pad(0.0 if z is None else z, INVALID_FLOAT, np.float32),
      state=pad(state, INVALID_INT, np.int32),
      lane_ids=pad(lane_ids, INVALID_INT, np.int32),
      valid=pad(valid, False, bool))


def empty_traffic_lights(num_timesteps: int,
                         num_lights: int = NUM_TRAFFIC_LIGHTS) -> TrafficLights:
  """All-invalid signals ``(num_lights, num_timesteps)``."""
  zeros = np.zeros((0, num_timesteps))
  return traffic_lights_from_arrays(zeros, zeros, zeros.astype(np.int32),
                                    zeros.astype(np.int32), zeros.astype(bool),
                                    num_lights=num_lights)


def make_state(log_trajectory: Trajectory, object_metadata: ObjectMetadata,
               roadgraph_points: RoadgraphPoints,
               log_traffic_light: TrafficLights | None = None,
               sdc_paths=None) -> SimulatorState:
  """A state as a data loader returns it: ``timestep`` 0, sim = log copy.

  Call the environment's ``reset`` to start an episode at ``init_steps - 1``.
  """
  if log_traffic_light is None:
    log_traffic_light = empty_traffic_lights(log_trajectory.num_timesteps)
  state = SimulatorState(
      sim_trajectory=log_trajectory, log_trajectory=log_trajectory,
      log_traffic_light=log_traffic_light, object_metadata=object_metadata,
      timestep=jnp.asarray(0, jnp.int32), roadgraph_points=roadgraph_points,
      sdc_paths=sdc_paths)
  state.validate()
  return state


def stack_states(states: Sequence[SimulatorState]) -> SimulatorState:
  """Stacks equally shaped states on a new leading batch axis."""
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)
