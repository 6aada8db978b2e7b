"""Waymax bridge: field-by-field conversion; the real-Waymax test skips without it."""

import dataclasses
import importlib.util
import types

import chex
import jax
import pytest
from flax import struct

from spacer_jax.sim import datatypes as dt
from spacer_jax.sim import waymax_bridge


def _stand_in_module() -> types.ModuleType:
  """A module with Waymax's class names and fields (built from the field lists)."""
  module = types.ModuleType('stand_in_waymax_datatypes')
  for cls in (dt.Trajectory, dt.ObjectMetadata, dt.RoadgraphPoints, dt.TrafficLights,
              dt.Paths, dt.Action, dt.TrajectoryUpdate):
    annotations = {f.name: jax.Array for f in dataclasses.fields(cls)}
    setattr(module, cls.__name__, struct.dataclass(
        type(cls.__name__, (), {'__annotations__': annotations})))
  annotations = {f.name: object for f in dataclasses.fields(dt.SimulatorState)
                 if f.name not in ('road_edge_index', 'sdc_paths')}
  annotations['sdc_paths'] = object
  module.SimulatorState = struct.dataclass(
      type('SimulatorState', (), {'__annotations__': annotations, 'sdc_paths': None}))
  return module


def test_round_trip_through_a_waymax_shaped_module(two_lane_state):
  module = _stand_in_module()
  state = two_lane_state.replace(road_edge_index=None)
  theirs = waymax_bridge.to_waymax(state, module)
  assert type(theirs).__name__ == 'SimulatorState'
  assert not hasattr(theirs, 'road_edge_index')
  assert type(theirs.log_trajectory) is module.Trajectory
  back = waymax_bridge.from_waymax(theirs)
  chex.assert_trees_all_equal(back, state)


def test_from_waymax_validates(two_lane_state):
  module = _stand_in_module()
  theirs = waymax_bridge.to_waymax(two_lane_state, module)
  broken = theirs.replace(log_trajectory=theirs.log_trajectory.replace(
      x=theirs.log_trajectory.x[:, :5]))
  with pytest.raises(dt.DataValidationError, match=r'Trajectory\.x has shape'):
    waymax_bridge.from_waymax(broken)


def test_unknown_types_are_rejected():
  with pytest.raises(TypeError, match='does not know'):
    waymax_bridge.from_waymax(object())


def test_impostor_waymax_package_is_refused(monkeypatch):
  impostor = types.ModuleType('waymax.datatypes')
  monkeypatch.setitem(__import__('sys').modules, 'waymax', types.ModuleType('waymax'))
  monkeypatch.setitem(__import__('sys').modules, 'waymax.datatypes', impostor)
  with pytest.raises(ImportError, match="not Waymo's simulator"):
    waymax_bridge.waymax_datatypes()


def _real_waymax_available() -> bool:
  try:
    return importlib.util.find_spec('waymax.datatypes') is not None and hasattr(
        importlib.import_module('waymax.datatypes'), 'SimulatorState')
  except ImportError:
    return False


@pytest.mark.skipif(not _real_waymax_available(),
                    reason="Waymo's Waymax (GitHub source install) is not importable")
def test_round_trip_with_real_waymax(two_lane_state):
  state = two_lane_state.replace(road_edge_index=None)
  theirs = waymax_bridge.to_waymax(state)
  theirs.validate()
  chex.assert_trees_all_equal(waymax_bridge.from_waymax(theirs), state)
