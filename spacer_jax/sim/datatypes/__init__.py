"""Waymax-compatible simulator datatypes (same field names, shapes and conventions)."""

from spacer_jax.sim.datatypes.action import Action, TrajectoryUpdate, merge_updates
from spacer_jax.sim.datatypes.checks import DataValidationError
from spacer_jax.sim.datatypes.objects import ObjectMetadata, ObjectType
from spacer_jax.sim.datatypes.operations import select_objects, slice_time, update_time
from spacer_jax.sim.datatypes.roadgraph import (
    MapElementIds,
    RoadgraphPoints,
    is_lane,
    is_road_edge,
    is_road_line,
)
from spacer_jax.sim.datatypes.route import Paths
from spacer_jax.sim.datatypes.simulator_state import (
    DEFAULT_NUM_OBJECTS,
    DEFAULT_NUM_ROADGRAPH_POINTS,
    INIT_STEPS,
    NUM_TIMESTEPS,
    TIMESTEP_MICROS,
    TIMESTEP_SECONDS,
    SimulatorState,
)
from spacer_jax.sim.datatypes.traffic_lights import (
    NUM_TRAFFIC_LIGHTS,
    TrafficLights,
    TrafficLightStates,
    is_red,
)
from spacer_jax.sim.datatypes.trajectory import INVALID_FLOAT, INVALID_INT, Trajectory

__all__ = [
    'DEFAULT_NUM_OBJECTS', 'DEFAULT_NUM_ROADGRAPH_POINTS', 'INIT_STEPS', 'INVALID_FLOAT',
    'INVALID_INT', 'NUM_TIMESTEPS', 'NUM_TRAFFIC_LIGHTS', 'TIMESTEP_MICROS',
    'TIMESTEP_SECONDS', 'Action', 'DataValidationError', 'MapElementIds', 'ObjectMetadata',
    'ObjectType', 'Paths', 'RoadgraphPoints', 'SimulatorState', 'TrafficLightStates',
    'TrafficLights', 'Trajectory', 'TrajectoryUpdate', 'is_lane', 'is_red', 'is_road_edge',
    'is_road_line',
    'merge_updates', 'select_objects', 'slice_time', 'update_time',
]
