"""Small synthetic WOMD-like states for tests and tools (writers' input).

Built with :mod:`spacer_jax.sim.builders`: a straight two-lane road with road edges,
lane centres, a road line, a crosswalk and a stop sign; cars driving along it; one
signal per lane. Deterministic for a given ``seed``.
"""

from __future__ import annotations

import numpy as np

from spacer_jax.sim import builders
from spacer_jax.sim.datatypes import NUM_TIMESTEPS, MapElementIds, SimulatorState


def synthetic_state(num_real: int = 5, num_objects: int = 8, sdc_row: int = 0,
                    num_rg_points: int = 2048, seed: int = 0,
                    num_timesteps: int = NUM_TIMESTEPS) -> SimulatorState:
  """A loader-convention state (timestep 0, sim = log) with ``num_real`` objects.

  Args:
    num_real: real objects, in rows ``0..num_real-1``; the rest are padding.
    num_objects: object slots.
    sdc_row: row of the SDC (< num_real).
    num_rg_points: roadgraph slots (the map uses about 1550).
    seed: varies positions, speeds, sizes and signal states.
    num_timesteps: log length.

  Returns:
    An unbatched ``SimulatorState`` (jax leaves). Row 1 (or the first non-SDC row) is
    modeled, the last real row is an object of interest and is invalid for its last 20
    steps; ids are ``100 + row``.
  """
  if not 0 <= sdc_row < num_real <= num_objects:
    raise ValueError('need 0 <= sdc_row < num_real <= num_objects.')
  rng = np.random.default_rng(seed)
  t = np.arange(num_timesteps) * 0.1
  lane_y = np.where(np.arange(num_real) % 2 == 0, -1.75, 1.75)
  speed = rng.uniform(3.0, 12.0, num_real)
  x0 = rng.uniform(0.0, 20.0, num_real) + 6.0 * np.arange(num_real)
  x = x0[:, None] + speed[:, None] * t
  y = np.broadcast_to(lane_y[:, None], x.shape) + rng.normal(0, 0.05, x.shape)
  valid = np.ones(x.shape, bool)
  valid[num_real - 1, num_timesteps - 20:] = False
  traj = builders.trajectory_from_arrays(
      x, y, np.zeros(x.shape), valid, length=rng.uniform(4.0, 5.0, num_real),
      width=rng.uniform(1.8, 2.1, num_real), height=rng.uniform(1.4, 1.8, num_real),
      z=np.full(x.shape, 0.25), vel_x=np.broadcast_to(speed[:, None], x.shape),
      vel_y=np.zeros(x.shape), num_objects=num_objects, start_micros=0)
  modeled = np.zeros(num_real, bool)
  modeled[1 if sdc_row != 1 or num_real < 3 else 2] = num_real > 1
  interest = np.zeros(num_real, bool)
  interest[num_real - 1] = True
  types = np.ones(num_real, np.int32)
  if num_real > 2:
    types[-1] = 3  # a cyclist
  meta = builders.metadata_from_arrays(
      types, num_objects=num_objects, sdc_index=sdc_row, is_modeled=modeled,
      ids=100 + np.arange(num_real), objects_of_interest=interest)
  length = 150.0
  road = [
      builders.Polyline(np.array([[0.0, -3.5, 0.0], [length, -3.5, 0.0]]),
                        MapElementIds.ROAD_EDGE_BOUNDARY, 1),
      builders.Polyline(np.array([[length, 3.5, 0.0], [0.0, 3.5, 0.0]]),
                        MapElementIds.ROAD_EDGE_MEDIAN, 2),
      builders.Polyline(np.array([[0.0, -1.75, 0.0], [length, -1.75, 0.0]]),
                        MapElementIds.LANE_SURFACE_STREET, 3),
      builders.Polyline(np.array([[length, 1.75, 0.0], [0.0, 1.75, 0.0]]),
                        MapElementIds.LANE_SURFACE_STREET, 4),
      builders.Polyline(np.array([[0.0, 0.0, 0.0], [length, 0.0, 0.0]]),
                        MapElementIds.ROAD_LINE_SOLID_DOUBLE_YELLOW, 5),
      builders.Polyline(np.array([[100.0, -3.5, 0.0], [103.0, -3.5, 0.0],
                                  [103.0, 3.5, 0.0], [100.0, 3.5, 0.0],
                                  [100.0, -3.5, 0.0]]), MapElementIds.CROSSWALK, 6),
      builders.Polyline(np.array([[98.0, -3.0, 0.0]]), MapElementIds.STOP_SIGN, 7),
  ]
  roadgraph = builders.roadgraph_from_polylines(road, num_points=num_rg_points)
  states = rng.integers(1, 9, size=(2, 1)) * np.ones((2, num_timesteps), np.int32)
  states[:, num_timesteps // 2:] = (states[:, num_timesteps // 2:] % 8) + 1
  lights = builders.traffic_lights_from_arrays(
      x=np.array([[98.0], [105.0]]), y=np.array([[-1.75], [1.75]]), state=states,
      lane_ids=np.array([[3], [4]]), valid=np.ones((2, num_timesteps), bool),
      z=np.zeros((2, 1)))
  return builders.make_state(traj, meta, roadgraph, lights)
