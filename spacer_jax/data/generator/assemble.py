"""Scenario assembly: map + traffic -> a padded Waymax-compatible ``SimulatorState``.

Turns the traffic rollout into world-frame poses (route lookup plus lateral offset),
adds smooth sensor-like noise, chooses the SDC and tracks to predict, fits objects and
map points into the configured slots and calls the shared builders.
"""

from __future__ import annotations

import numpy as np

from spacer_jax.data.generator import geometry as geo
from spacer_jax.data.generator import noise, safety, signals
from spacer_jax.data.generator.config import GeneratorConfig
from spacer_jax.data.generator.interest import objects_of_interest
from spacer_jax.data.generator.lanes import RouteTable
from spacer_jax.data.generator.maps import EDGE, RoadMap
from spacer_jax.data.generator.traffic import DT, VEHICLE, Rollout
from spacer_jax.sim import builders
from spacer_jax.sim.builders import Polyline
from spacer_jax.sim.datatypes import SimulatorState


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], std: float,
                 corr_steps: float = 10.0) -> np.ndarray:
  """Temporally correlated noise ``(..., T)`` with stationary std ``std``.

  An AR(1) process along the last axis: tracking noise in real logs is smooth, and
  white noise would make finite-differenced speeds and accelerations unrealistic.
  Computed as a prefix scan (``log2 T`` vector steps, no BLAS): after the pass with
  offset k every entry holds its innovations from the last 2k steps.
  """
  if std <= 0:
    return np.zeros(shape)
  phi = np.exp(-1.0 / corr_steps)
  out = rng.normal(0.0, std * np.sqrt(1 - phi**2), shape)
  out[..., 0] = rng.normal(0.0, std, shape[:-1])
  k = 1
  while k < shape[-1]:
    out[..., k:] = out[..., k:] + phi**k * out[..., :-k]
    k *= 2
  return out


def poses(tab: RouteTable, roll: Rollout) -> tuple[np.ndarray, ...]:
  """World-frame x, y, yaw, vel_x, vel_y ``(A, T)`` of the rollout (noise free)."""
  xy, yaw = tab.lookup(roll.route, roll.s)
  nrm = np.stack([-np.sin(yaw), np.cos(yaw)], -1)
  xy = xy + roll.d[..., None] * nrm
  v = roll.v
  # Heading follows the path plus the angle of the lateral (lane change) motion.
  yaw_out = yaw + np.arctan2(roll.d_dot, np.maximum(v, 0.5))
  vx = v * np.cos(yaw) - roll.d_dot * np.sin(yaw)
  vy = v * np.sin(yaw) + roll.d_dot * np.cos(yaw)
  return xy[..., 0], xy[..., 1], yaw_out, vx, vy


def wrap(a: np.ndarray) -> np.ndarray:
  return (a + np.pi) % (2 * np.pi) - np.pi


def select_objects(rng: np.random.Generator, x: np.ndarray, y: np.ndarray,
                   valid: np.ndarray, types: np.ndarray, speed: np.ndarray,
                   num_objects: int, current: int, max_ttp: int
                   ) -> tuple[np.ndarray, int, np.ndarray]:
  """Chooses which agents become objects, the SDC and the tracks to predict.

  Returns:
    order: agent indices to keep, SDC first, then modeled agents, then the rest.
    sdc: position of the SDC in ``order`` (always 0).
    modeled: ``(len(order),)`` tracks_to_predict mask.
  """
  seen = valid.any(axis=1)
  full = valid.all(axis=1)
  veh = types == VEHICLE
  cand = np.nonzero(full & veh)[0]
  if len(cand) == 0:
    cand = np.nonzero(veh & valid[:, current])[0]
  if len(cand) == 0:
    cand = np.nonzero(valid[:, current])[0]
  # Prefer an SDC near the middle of the action that is moving.
  cx, cy = np.median(x[seen, current]), np.median(y[seen, current])
  dist = np.hypot(x[cand, current] - cx, y[cand, current] - cy)
  score = dist - 5.0 * np.minimum(speed[cand, current], 5.0) + rng.uniform(0, 30, len(cand))
  sdc = cand[np.argmin(score)]
  # Everybody else by closest approach to the SDC over the log.
  dx = np.where(valid, x - x[sdc], np.inf)
  dy = np.where(valid, y - y[sdc], np.inf)
  closest = np.sqrt(dx**2 + dy**2).min(axis=1)
  closest[sdc] = -1.0
  others = np.nonzero(seen)[0]
  others = others[np.argsort(closest[others], kind='stable')][:num_objects]
  # Tracks to predict: valid now and for most of the future, near the SDC.
  future_ok = valid[:, current:].mean(axis=1) > 0.8
  ttp_cand = [i for i in others if i != sdc and valid[i, current] and future_ok[i]
              and closest[i] < 60.0]
  n_ttp = min(max_ttp, len(ttp_cand))
  ttp = list(rng.permutation(ttp_cand[:2 * max_ttp])[:n_ttp]) if n_ttp else []
  if max_ttp > 0 and n_ttp < max_ttp:
    ttp = [sdc] + ttp[:max_ttp - 1]  # WOMD often predicts the SDC too
  rest = [i for i in others if i != sdc and i not in ttp]
  order = np.array([sdc] + [i for i in ttp if i != sdc] + rest, np.int64)[:num_objects]
  modeled = np.isin(order, ttp)
  return order, 0, modeled


def crop_polylines(polys: list[Polyline], anchor: np.ndarray, budget: int
                   ) -> list[Polyline]:
  """Drops whole (already resampled) polylines, farthest from ``anchor`` first, lanes
  before edges, until their point count fits ``budget``."""
  counts = np.array([len(p.xyz) for p in polys])
  if counts.sum() <= budget:
    return polys
  dist = np.array([np.hypot(*(np.asarray(p.xyz)[:, :2] - anchor).T).min() for p in polys])
  # Road edges keep the off-road metric meaningful: drop them last.
  is_edge = np.array([p.type in (15, 16) for p in polys])
  order = np.lexsort((-dist, is_edge))  # lanes/lines farthest first, then edges
  keep = np.ones(len(polys), bool)
  total = counts.sum()
  for i in order:
    if total <= budget:
      break
    keep[i] = False
    total -= counts[i]
  return [p for p, k in zip(polys, keep) if k]


def to_state(rng: np.random.Generator, road: RoadMap, tab: RouteTable, roll: Rollout,
             lights: dict[int, np.ndarray], start: int, config: GeneratorConfig,
             noise_rng: np.random.Generator | None = None) -> SimulatorState:
  """Builds the padded ``SimulatorState`` from a rollout over the logged window.

  Args:
    rng: the scenario's generator (sensor noise, object selection, ids).
    road, tab, roll, lights: map, route table, rollout ``(A, T)`` and signal plan.
    start: first logged step of the rollout's signal plan.
    config: sizes and noise settings.
    noise_rng: a separate generator for the rare noise events, so that asking for
      them leaves the rest of the scenario unchanged (default: a fixed seed).
  """
  noise_rng = np.random.default_rng(0) if noise_rng is None else noise_rng
  t = config.num_timesteps
  x, y, yaw, vx, vy = poses(tab, roll)
  a = x.shape[0]
  nx, ny, nyaw = smooth_noise(rng, (3, a, t), 1.0)
  nx, ny, nyaw = (nx * config.position_noise, ny * config.position_noise,
                  nyaw * config.heading_noise)
  # Keep velocities consistent with the noisy positions: add the noise's derivative.
  x, y = x + nx, y + ny
  vx = vx + np.gradient(nx, DT, axis=1)
  vy = vy + np.gradient(ny, DT, axis=1)
  yaw = wrap(yaw + nyaw)
  valid = roll.active.copy()
  types = roll.agents.type
  ag = roll.agents
  # Drop one agent of every overlapping pair: logs are collision free unless noise is
  # asked for (added below, on the final objects).
  for _ in range(4):
    pairs = safety.overlapping_pairs(x, y, yaw, ag.length, ag.width, valid)
    if not len(pairs):
      break
    # Drop the agent of each pair that was seen for fewer steps (arrivals, leavers).
    steps = valid.sum(1)
    drop = np.where(steps[pairs[:, 0]] < steps[pairs[:, 1]], pairs[:, 0], pairs[:, 1])
    valid[drop] = False
  current = min(10, t - 1)
  order, _, modeled = select_objects(rng, x, y, valid, types, roll.v,
                                     config.num_objects, current,
                                     config.max_tracks_to_predict)
  ids = rng.choice(100000, size=len(order), replace=False).astype(np.int32)
  obj = noise.Objects(x=x[order], y=y[order], yaw=yaw[order], vel_x=vx[order],
                      vel_y=vy[order], valid=valid[order], length=ag.length[order],
                      width=ag.width[order], height=ag.height[order], types=types[order])
  # The object's route: at the current step, else where it is first seen.
  ov = obj.valid
  at = np.where(ov[:, current], current, np.argmax(ov, axis=1))
  route = roll.route[order, at]

  polys = road.lane_polylines() + road.features
  lines = geo.resample_many([p.xyz for p in polys], config.map_spacing)
  polys = [Polyline(ln, p.type, p.id) for ln, p in zip(lines, polys)]
  anchor = np.array([obj.x[0, current], obj.y[0, current]])
  polys = crop_polylines(polys, anchor, config.num_roadgraph_points)

  # Rare noise events (each checked to be the log's only one of its kind).
  u_collide, u_park = noise_rng.random(2)
  parked_row = None
  if u_collide < config.collision_noise_rate or u_park < config.offroad_noise_rate:
    edges = safety.RoadEdges([p.xyz for p in polys], [p.type for p in polys])
    if u_park < config.offroad_noise_rate:
      boundary = [p.xyz for p in polys if p.type == EDGE]
      parked = noise.park_over_curb(noise_rng, obj, anchor, edges, boundary)
      if parked is not None:
        # All slots used: the parked car replaces the object farthest from the SDC.
        keep = min(len(ids), config.num_objects - 1)
        rows = np.r_[np.arange(keep), len(ids)]
        obj = noise.Objects(**{k: v[rows] for k, v in vars(parked).items()})
        modeled = np.r_[modeled[:keep], False]
        route = np.r_[route[:keep], -1]
        spare = np.setdiff1d(np.arange(100000), ids)
        ids = np.r_[ids[:keep], noise_rng.choice(spare)].astype(np.int32)
        parked_row = keep
    if u_collide < config.collision_noise_rate:
      noise.inject_collision(noise_rng, obj, 0, edges, exclude=parked_row)
  speed = np.hypot(obj.vel_x, obj.vel_y)
  interest = objects_of_interest(tab, route, obj.x, obj.y, obj.valid, speed, obj.types)

  traj = builders.trajectory_from_arrays(
      obj.x, obj.y, obj.yaw, obj.valid, length=obj.length, width=obj.width,
      height=obj.height, vel_x=obj.vel_x, vel_y=obj.vel_y, num_objects=config.num_objects)
  meta = builders.metadata_from_arrays(obj.types, num_objects=config.num_objects,
                                       sdc_index=0, is_modeled=modeled, ids=ids,
                                       objects_of_interest=interest)
  rg = builders.roadgraph_from_polylines(polys, config.num_roadgraph_points, spacing=None)
  lx, ly, ls, lid, lv = signals.traffic_light_arrays(road.lanes, lights, start, t)
  tl = builders.traffic_lights_from_arrays(lx, ly, ls, lid, lv)
  return builders.make_state(traj, meta, rg, tl)
