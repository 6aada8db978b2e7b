"""The full simulator state (Waymax's ``SimulatorState``)."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim.datatypes import checks, operations
from spacer_jax.sim.datatypes.objects import ObjectMetadata
from spacer_jax.sim.datatypes.roadgraph import RoadgraphPoints
from spacer_jax.sim.datatypes.route import Paths
from spacer_jax.sim.datatypes.traffic_lights import TrafficLights
from spacer_jax.sim.datatypes.trajectory import Trajectory

# WOMD constants (10 Hz; 10 past + 1 current + 80 future steps).
NUM_TIMESTEPS = 91
INIT_STEPS = 11
TIMESTEP_SECONDS = 0.1
TIMESTEP_MICROS = 100_000
DEFAULT_NUM_OBJECTS = 128
DEFAULT_NUM_ROADGRAPH_POINTS = 20000


@struct.dataclass
class SimulatorState:
  """Everything the simulator needs, for one scenario or a batch of them.

  Attributes:
    sim_trajectory: simulated trajectory ``(..., num_objects, num_timesteps)``; steps
      up to ``timestep`` are filled, later ones are -1/invalid.
    log_trajectory: the logged trajectory, same shape.
    log_traffic_light: logged signals ``(..., num_lights, num_timesteps)``.
    object_metadata: ``(..., num_objects)``.
    timestep: current step index, int32 ``(...)``.
    roadgraph_points: ``(..., num_points)``.
    sdc_paths: optional routes of the SDC ``(..., num_paths, num_points_per_path)``.
    road_edge_index: optional per-scenario acceleration structure for road-edge
      queries (``spacer_jax.sim.metrics.road_edges.RoadEdgeIndex``), built once by the
      environment's ``reset``. Not part of Waymax's state: it is derived from
      ``roadgraph_points``, dropped when converting to Waymax, and the metrics fall
      back to the exact brute-force computation when it is absent.
  """

  sim_trajectory: Trajectory
  log_trajectory: Trajectory
  log_traffic_light: TrafficLights
  object_metadata: ObjectMetadata
  timestep: jax.Array
  roadgraph_points: RoadgraphPoints
  sdc_paths: Optional[Paths] = None
  road_edge_index: Optional[Any] = None

  @property
  def shape(self) -> tuple[int, ...]:
    """The batch shape ``(...)``."""
    return tuple(self.timestep.shape)

  @property
  def batch_dims(self) -> tuple[int, ...]:
    return self.shape

  @property
  def num_objects(self) -> int:
    return self.log_trajectory.num_objects

  @property
  def remaining_timesteps(self) -> jax.Array:
    """Steps left in the episode, ``(...)``."""
    return self.log_trajectory.num_timesteps - 1 - self.timestep

  @property
  def is_done(self) -> jax.Array:
    """True once ``timestep + 1`` reaches the log length, ``(...)``."""
    return self.timestep + 1 >= self.log_trajectory.num_timesteps

  @property
  def current_sim_trajectory(self) -> Trajectory:
    """The simulated state at ``timestep``: ``(..., num_objects, 1)``."""
    return operations.slice_time(self.sim_trajectory, self.timestep, 1)

  @property
  def current_log_trajectory(self) -> Trajectory:
    """The logged state at ``timestep``: ``(..., num_objects, 1)``."""
    return operations.slice_time(self.log_trajectory, self.timestep, 1)

  @property
  def current_traffic_light(self) -> TrafficLights:
    """Logged signals at ``timestep``: ``(..., num_lights, 1)``."""
    return operations.slice_time(self.log_traffic_light, self.timestep, 1)

  def validate(self) -> None:
    """Validates every part and their agreement; raises ``DataValidationError``.

    Checks each sub-structure's fields, that all share one batch shape, that the
    simulated and logged trajectories have the same shape, and that ``timestep`` is
    an int32 within the log.
    """
    for name in ('sim_trajectory', 'log_trajectory', 'log_traffic_light',
                 'object_metadata', 'roadgraph_points'):
      part = getattr(self, name)
      if part is None:
        raise checks.DataValidationError(f'SimulatorState.{name} is missing.')
      part.validate()
    if self.sdc_paths is not None:
      self.sdc_paths.validate()
    timestep = jnp.asarray(self.timestep)
    if timestep.dtype != jnp.int32:
      raise checks.DataValidationError(
          f'SimulatorState.timestep has dtype {timestep.dtype}, expected int32.')
    if self.sim_trajectory.shape != self.log_trajectory.shape:
      raise checks.DataValidationError(
          f'SimulatorState.sim_trajectory has shape {self.sim_trajectory.shape} but '
          f'log_trajectory has {self.log_trajectory.shape}; they must match.')
    if self.object_metadata.num_objects != self.log_trajectory.num_objects:
      raise checks.DataValidationError(
          f'SimulatorState.object_metadata has {self.object_metadata.num_objects} '
          f'objects, expected {self.log_trajectory.num_objects} (num_objects of '
          'log_trajectory).')
    if self.log_traffic_light.num_timesteps != self.log_trajectory.num_timesteps:
      raise checks.DataValidationError(
          f'SimulatorState.log_traffic_light has {self.log_traffic_light.num_timesteps}'
          f' timesteps, expected {self.log_trajectory.num_timesteps}.')
    batch = tuple(timestep.shape)
    checks.check_batch_shapes('SimulatorState', {
        'timestep': batch,
        'sim_trajectory': self.sim_trajectory.batch_shape,
        'log_trajectory': self.log_trajectory.batch_shape,
        'log_traffic_light': self.log_traffic_light.shape[:-2],
        'object_metadata': self.object_metadata.shape[:-1],
        'roadgraph_points': self.roadgraph_points.shape[:-1],
        'sdc_paths': None if self.sdc_paths is None else self.sdc_paths.shape[:-2],
    })
    if checks.is_concrete(timestep):
      if bool(jnp.any((timestep < 0) | (timestep >= self.log_trajectory.num_timesteps))):
        raise checks.DataValidationError(
            f'SimulatorState.timestep holds {timestep}, expected values in '
            f'[0, {self.log_trajectory.num_timesteps}).')
