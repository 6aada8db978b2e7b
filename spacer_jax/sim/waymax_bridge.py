"""Conversion to and from Waymo's Waymax datatypes, for users who have Waymax installed.

Waymax is distributed only as source on GitHub (non-commercial licence); install it
from there. The PyPI package called ``waymax`` is NOT Waymo's simulator: this module
refuses to use a ``waymax`` that lacks Waymax's datatypes, and spacer_jax never
depends on it.

spacer_jax's datatypes carry Waymax's field names, shapes, dtypes and conventions, so
conversion copies arrays field by field. The only extra field on our side,
``SimulatorState.road_edge_index``, is a derived cache: it is dropped on the way out and
rebuilt by ``env.reset`` on the way back.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType
from typing import Any

from spacer_jax.sim import datatypes as ours

# Our class -> Waymax class name; the field names are identical.
_CLASS_NAMES = {
    ours.Trajectory: 'Trajectory',
    ours.ObjectMetadata: 'ObjectMetadata',
    ours.RoadgraphPoints: 'RoadgraphPoints',
    ours.TrafficLights: 'TrafficLights',
    ours.Paths: 'Paths',
    ours.Action: 'Action',
    ours.TrajectoryUpdate: 'TrajectoryUpdate',
}
_STATE_PARTS = {
    'sim_trajectory': ours.Trajectory, 'log_trajectory': ours.Trajectory,
    'log_traffic_light': ours.TrafficLights, 'object_metadata': ours.ObjectMetadata,
    'roadgraph_points': ours.RoadgraphPoints, 'sdc_paths': ours.Paths,
}


def waymax_datatypes() -> ModuleType:
  """Imports ``waymax.datatypes``, checking that it is Waymo's simulator.

  Raises:
    ImportError: if Waymax is not installed, or the installed ``waymax`` is not
      Waymo's (e.g. the unrelated PyPI package of that name).
  """
  try:
    module = importlib.import_module('waymax.datatypes')
  except ImportError as e:
    raise ImportError(
        "Waymo's Waymax is not installed. Install it from its GitHub source "
        "(waymo-research/waymax); the PyPI package named 'waymax' is unrelated.") from e
  if not hasattr(module, 'SimulatorState') or not hasattr(module, 'Trajectory'):
    raise ImportError(
        "The installed 'waymax' package has no SimulatorState/Trajectory: it is not "
        "Waymo's simulator (the PyPI package of that name is unrelated). Uninstall it "
        'and install Waymax from its GitHub source.')
  return module


def _field_names(cls: type) -> list[str]:
  return [f.name for f in dataclasses.fields(cls)]


def _convert(obj: Any, target_cls: type) -> Any:
  names = set(_field_names(target_cls))
  kwargs = {name: getattr(obj, name) for name in _field_names(type(obj)) if name in names}
  missing = [n for n in names if n not in kwargs]
  if missing:
    raise TypeError(f'cannot convert {type(obj).__name__} to {target_cls.__name__}: '
                    f'fields {missing} have no counterpart.')
  return target_cls(**kwargs)


def to_waymax(obj: Any, module: ModuleType | None = None) -> Any:
  """Converts a spacer_jax datatype (or ``SimulatorState``) to Waymax's.

  Args:
    obj: any of Trajectory, ObjectMetadata, RoadgraphPoints, TrafficLights, Paths,
      Action, TrajectoryUpdate, SimulatorState.
    module: the ``waymax.datatypes`` module; imported when None.
  """
  module = module or waymax_datatypes()
  if isinstance(obj, ours.SimulatorState):
    parts = {name: None if getattr(obj, name) is None
             else to_waymax(getattr(obj, name), module) for name in _STATE_PARTS}
    return module.SimulatorState(timestep=obj.timestep, **parts)
  for cls, name in _CLASS_NAMES.items():
    if isinstance(obj, cls):
      return _convert(obj, getattr(module, name))
  raise TypeError(f'to_waymax does not know {type(obj).__name__}.')


def from_waymax(obj: Any, validate: bool = True) -> Any:
  """Converts a Waymax datatype (or ``SimulatorState``) to spacer_jax's.

  The conversion is by class name, so it needs no Waymax import. States are validated
  (shapes, dtypes) unless ``validate`` is False.
  """
  name = type(obj).__name__
  if name == 'SimulatorState':
    parts = {}
    for part, cls in _STATE_PARTS.items():
      value = getattr(obj, part, None)
      parts[part] = None if value is None else _convert(value, cls)
    state = ours.SimulatorState(timestep=obj.timestep, **parts)
    if validate:
      state.validate()
    return state
  for cls, waymax_name in _CLASS_NAMES.items():
    if name == waymax_name:
      return _convert(obj, cls)
  raise TypeError(f'from_waymax does not know {name}.')
