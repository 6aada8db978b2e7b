"""Off-road metrics: box corners against the road edges (see :mod:`road_edges`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spacer_jax.sim.datatypes import SimulatorState
from spacer_jax.sim.metrics import road_edges
from spacer_jax.sim.metrics.base import MetricResult


def corner_signed_distances(state: SimulatorState) -> road_edges.RoadEdgeDistance:
  """Signed road-edge distance of each box corner, ``(..., num_objects, 4)``.

  Corners of the current simulated boxes at the object's z. Uses
  ``state.road_edge_index`` when present (the fast path, certified exact per corner),
  else the brute force; both follow Waymax's definition.
  """
  traj = state.current_sim_trajectory
  corners = traj.bbox_corners[..., 0, :, :]  # (..., N, 4, 2)
  z = jnp.broadcast_to(traj.z[..., 0, None, None], corners.shape[:-1] + (1,))
  query = jnp.concatenate([corners, z], axis=-1)
  n = query.shape[-3]
  query = query.reshape(query.shape[:-3] + (n * 4, 3))
  out = road_edges.signed_distance_to_road_edge(query, state.roadgraph_points,
                                                state.road_edge_index)
  return jax.tree_util.tree_map(lambda v: v.reshape(v.shape[:-1] + (n, 4)), out)


def _from_corners(state: SimulatorState, d: road_edges.RoadEdgeDistance
                  ) -> dict[str, MetricResult]:
  valid = state.current_sim_trajectory.valid[..., 0] & jnp.all(d.valid, axis=-1)
  return {
      'offroad': MetricResult.create(jnp.any(d.distance > 0, axis=-1), valid),
      'distance_to_road_edge': MetricResult.create(jnp.max(d.distance, axis=-1), valid),
  }


def offroad_and_distance(state: SimulatorState) -> dict[str, MetricResult]:
  """Both ``offroad`` and ``distance_to_road_edge`` from one road-edge query."""
  return _from_corners(state, corner_signed_distances(state))


def distance_to_road_edge(state: SimulatorState) -> MetricResult:
  """Signed distance (m) of the most off-road corner: max over the 4 corners.

  Positive = at least that far off the road. Valid where the object is valid and the
  map has road edges.
  """
  return offroad_and_distance(state)['distance_to_road_edge']


def offroad(state: SimulatorState) -> MetricResult:
  """1.0 where any box corner has signed road-edge distance > 0 (Waymax's offroad).

  Valid where the object is valid and the map has road edges.
  """
  return offroad_and_distance(state)['offroad']
