"""A general ego-frame observation of the scene for every object.

For each object i (the "ego"), everything is expressed in i's frame at the current
step: the other objects' recent poses, velocities and sizes, the nearest roadgraph
points, and the traffic signals. Policies with their own feature design (SPACER's
late-fusion features) build on the same frame transforms.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim import geometry
from spacer_jax.sim.datatypes import SimulatorState, slice_time


@dataclasses.dataclass(frozen=True)
class ObservationConfig:
  """Sizes of the observation.

  Attributes:
    num_history: steps of object history (ending at the current step).
    num_roadgraph_points: nearest roadgraph points per ego.
  """

  num_history: int = 1
  num_roadgraph_points: int = 200


@struct.dataclass
class Observation:
  """Per-ego scene features; E = num_objects egos, N = num_objects others.

  Attributes:
    objects_xy: ``(..., E, N, H, 2)`` other objects' positions in the ego frame, m.
    objects_yaw: ``(..., E, N, H)`` headings relative to the ego's, rad.
    objects_vel_xy: ``(..., E, N, H, 2)`` velocities in the ego frame, m/s.
    objects_size: ``(..., E, N, 2)`` length and width, m.
    objects_valid: ``(..., E, N, H)`` bool.
    roadgraph_xy: ``(..., E, K, 2)`` nearest roadgraph points in the ego frame, m.
    roadgraph_dir_xy: ``(..., E, K, 2)`` their directions in the ego frame.
    roadgraph_types: ``(..., E, K)`` int32 map element types.
    roadgraph_valid: ``(..., E, K)`` bool.
    traffic_light_xy: ``(..., E, L, 2)`` stop points in the ego frame, m.
    traffic_light_state: ``(..., E, L)`` int32.
    traffic_light_valid: ``(..., E, L)`` bool.
    ego_valid: ``(..., E)`` bool: the ego exists at the current step.
  """

  objects_xy: jax.Array
  objects_yaw: jax.Array
  objects_vel_xy: jax.Array
  objects_size: jax.Array
  objects_valid: jax.Array
  roadgraph_xy: jax.Array
  roadgraph_dir_xy: jax.Array
  roadgraph_types: jax.Array
  roadgraph_valid: jax.Array
  traffic_light_xy: jax.Array
  traffic_light_state: jax.Array
  traffic_light_valid: jax.Array
  ego_valid: jax.Array


def observe(state: SimulatorState, config: ObservationConfig = ObservationConfig()
            ) -> Observation:
  """Builds the :class:`Observation` of every object at ``state.timestep``."""
  h = config.num_history
  start = jnp.maximum(state.timestep - (h - 1), 0)
  hist = slice_time(state.sim_trajectory, start, h)  # (..., N, H)
  cur = state.current_sim_trajectory  # (..., N, 1)
  ego_xy = cur.xy[..., 0, :]  # (..., E, 2)
  ego_yaw = cur.yaw[..., 0]  # (..., E)
  ego_valid = cur.valid[..., 0]

  # Broadcast egos against others: ego axis -3 (before N, H) for history fields.
  origin = ego_xy[..., :, None, None, :]
  yaw0 = ego_yaw[..., :, None, None]
  objects_xy = geometry.world_to_local(hist.xy[..., None, :, :, :], origin, yaw0)
  objects_vel = geometry.rotate(hist.vel_xy[..., None, :, :, :], -yaw0)
  objects_yaw = geometry.wrap_angle(hist.yaw[..., None, :, :] - yaw0)
  objects_valid = hist.valid[..., None, :, :] & ego_valid[..., :, None, None]
  size = jnp.stack([cur.length[..., 0], cur.width[..., 0]], -1)
  objects_size = jnp.broadcast_to(size[..., None, :, :], size.shape[:-2] + (
      size.shape[-2], size.shape[-2], 2))

  rg = state.roadgraph_points
  k = min(config.num_roadgraph_points, rg.num_points)
  d2 = jnp.sum((rg.xy[..., None, :, :] - ego_xy[..., :, None, :]) ** 2, -1)
  d2 = jnp.where(rg.valid[..., None, :], d2, jnp.inf)
  _, idx = jax.lax.top_k(-d2, k)  # (..., E, K)
  def gather(field):
    return jnp.take_along_axis(
        jnp.broadcast_to(field[..., None, :], idx.shape[:-1] + field.shape[-1:]), idx, -1)
  rg_xy = jnp.stack([gather(rg.x), gather(rg.y)], -1)
  rg_dir = jnp.stack([gather(rg.dir_x), gather(rg.dir_y)], -1)
  o2 = ego_xy[..., :, None, :]
  y2 = ego_yaw[..., :, None]

  tl = state.current_traffic_light  # (..., L, 1)
  tl_xy = geometry.world_to_local(tl.xy[..., None, :, 0, :], o2, y2)
  return Observation(
      objects_xy=objects_xy, objects_yaw=objects_yaw, objects_vel_xy=objects_vel,
      objects_size=objects_size, objects_valid=objects_valid,
      roadgraph_xy=geometry.world_to_local(rg_xy, o2, y2),
      roadgraph_dir_xy=geometry.rotate(rg_dir, -y2),
      roadgraph_types=gather(rg.types), roadgraph_valid=gather(rg.valid),
      traffic_light_xy=tl_xy,
      traffic_light_state=jnp.broadcast_to(tl.state[..., None, :, 0], tl_xy.shape[:-1]),
      traffic_light_valid=jnp.broadcast_to(tl.valid[..., None, :, 0], tl_xy.shape[:-1])
      & ego_valid[..., :, None],
      ego_valid=ego_valid)
