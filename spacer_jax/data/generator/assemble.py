"""Scenario assembly: map + traffic -> a padded Waymax-compatible ``SimulatorState``.

Turns the traffic rollout into world-frame poses (route lookup plus lateral offset),
adds smooth sensor-like noise, chooses the SDC near the map centre, logs every object
from the first step it comes within ``config.track_radius`` of the SDC (the SDC's
perception picking it up) to the end of the log, parks cars in the parking strips
near the SDC, chooses the tracks to predict, fits objects into the configured slots,
crops the roadgraph to what the logged objects reach and calls the shared builders.
"""

from __future__ import annotations

import numpy as np

from spacer_jax.data.generator import geometry as geo
from spacer_jax.data.generator import noise, safety, signals
from spacer_jax.data.generator.config import GeneratorConfig
from spacer_jax.data.generator.crop import crop_polylines
from spacer_jax.data.generator.interest import objects_of_interest
from spacer_jax.data.generator.lanes import RouteTable
from spacer_jax.data.generator.maps import EDGE, SDC_RADIUS_M, RoadMap
from spacer_jax.data.generator.parking import Spots
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


def sensed_poses(rng: np.random.Generator, tab: RouteTable, roll: Rollout,
                 config: GeneratorConfig) -> tuple[np.ndarray, ...]:
  """World-frame x, y, yaw, vel_x, vel_y ``(A, T)`` of the rollout with smooth sensor
  noise (``config.position_noise`` m, ``config.heading_noise`` rad); velocities get the
  noise's derivative, so they stay consistent with the noisy positions."""
  x, y, yaw, vx, vy = poses(tab, roll)
  nx, ny, nyaw = smooth_noise(rng, (3, *x.shape), 1.0)
  nx, ny = nx * config.position_noise, ny * config.position_noise
  return (x + nx, y + ny, wrap(yaw + nyaw * config.heading_noise),
          vx + np.gradient(nx, DT, axis=1), vy + np.gradient(ny, DT, axis=1))


def with_parked(agents: noise.Objects, park: Spots) -> noise.Objects:
  """``agents`` ``(A, T)`` followed by the parked cars: still at their spot, zero
  velocity and no sensor noise, present at every step."""
  t = agents.x.shape[1]
  still = np.ones((park.num, t))
  extra = {'x': park.x[:, None] * still, 'y': park.y[:, None] * still,
           'yaw': park.yaw[:, None] * still, 'vel_x': 0 * still, 'vel_y': 0 * still,
           'valid': still > 0, 'length': park.length, 'width': park.width,
           'height': park.height, 'types': np.full(park.num, VEHICLE)}
  return noise.Objects(**{k: np.concatenate([v, extra[k]]) for k, v in vars(agents).items()})


def choose_sdc(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, valid: np.ndarray,
               types: np.ndarray, speed: np.ndarray, current: int, center: np.ndarray
               ) -> int:
  """The SDC: a vehicle present for the whole log, preferably moving and within
  ``SDC_RADIUS_M`` of the map centre at the current step (the maps are built to hold
  the log of such an SDC).

  Args:
    x, y, valid, speed: ``(A, T)`` agent positions (m), presence and speed (m/s).
    types: ``(A,)`` agent types.
  """
  veh = types == VEHICLE
  cand = np.nonzero(valid.all(axis=1) & veh)[0]
  if len(cand) == 0:
    cand = np.nonzero(veh & valid[:, current])[0]
  if len(cand) == 0:
    cand = np.nonzero(valid[:, current])[0]
  dist = np.hypot(x[cand, current] - center[0], y[cand, current] - center[1])
  score = dist - 5.0 * np.minimum(speed[cand, current], 5.0) + rng.uniform(0, 30, len(cand))
  score = np.where(dist <= SDC_RADIUS_M, score, score + 1e6)  # near the centre first
  return int(cand[np.argmin(score)])


def track(x: np.ndarray, y: np.ndarray, valid: np.ndarray, sdc: int, radius: float
          ) -> np.ndarray:
  """Logged validity ``(A, T)``: from the first step an agent is within ``radius`` m
  of the SDC to the end of its presence (a tracker keeps what it has acquired); agents
  never that close are not logged.

  Args:
    x, y, valid: ``(A, T)`` positions (m) and presence of the simulated agents.
    sdc: the SDC's row (logged wherever it is present).
  """
  near = valid & (np.hypot(x - x[sdc], y - y[sdc]) <= radius)
  near[sdc] = valid[sdc]
  first = np.where(near.any(axis=1), np.argmax(near, axis=1), valid.shape[1])
  return valid & (np.arange(valid.shape[1])[None, :] >= first[:, None])


def select_objects(rng: np.random.Generator, x: np.ndarray, y: np.ndarray,
                   valid: np.ndarray, sdc: int, num_objects: int, current: int,
                   max_ttp: int, predictable: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Chooses which agents become objects and the tracks to predict.

  Args:
    x, y, valid: ``(A, T)`` logged positions (m) and validity.
    sdc: the SDC's row.
    predictable: ``(A,)`` agents that may be tracks to predict (parked cars may not).

  Returns:
    order: agent indices to keep, SDC first, then modeled agents, then the rest by
      closest approach to the SDC.
    modeled: ``(len(order),)`` tracks_to_predict mask.
  """
  seen = valid.any(axis=1)
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
              and closest[i] < 60.0 and predictable[i]]
  n_ttp = min(max_ttp, len(ttp_cand))
  ttp = list(rng.permutation(ttp_cand[:2 * max_ttp])[:n_ttp]) if n_ttp else []
  if max_ttp > 0 and n_ttp < max_ttp:
    ttp = [sdc] + ttp[:max_ttp - 1]  # WOMD often predicts the SDC too
  rest = [i for i in others if i != sdc and i not in ttp]
  order = np.array([sdc] + [i for i in ttp if i != sdc] + rest, np.int64)[:num_objects]
  modeled = np.isin(order, ttp)
  return order, modeled


def choose_parked(rng: np.random.Generator, spots: Spots, sdc_xy: np.ndarray,
                  radius: float, num_moving_vehicles: int,
                  share: tuple[float, float]) -> Spots:
  """Parks cars in spots within ``radius`` m of the SDC's path ``(T, 2)``.

  The scene's parked share ``q`` of the logged vehicles is drawn uniformly from
  ``share``; ``q / (1 - q)`` cars per logged moving vehicle are parked (fewer when the
  strips near the SDC have no more spots), in randomly chosen spots.
  """
  if spots.num == 0 or share[1] <= 0:
    return Spots.empty()
  q = rng.uniform(*share)
  # The path every 0.5 s: at most ~18 m apart, a few metres off the radius at worst.
  d2 = ((spots.x[:, None] - sdc_xy[None, ::5, 0]) ** 2
        + (spots.y[:, None] - sdc_xy[None, ::5, 1]) ** 2).min(axis=1)
  near = np.flatnonzero(d2 <= radius**2)
  want = int(round(q / max(1.0 - q, 1e-6) * num_moving_vehicles))
  return spots.take(np.sort(rng.permutation(near)[:want]))


def parked_touching(park: Spots, x: np.ndarray, y: np.ndarray, yaw: np.ndarray,
                    length: np.ndarray, width: np.ndarray, valid: np.ndarray
                    ) -> np.ndarray:
  """Parked cars ``(P,)`` whose box overlaps some agent's box at some step.

  Args:
    park: the parked cars.
    x, y, yaw, valid: ``(A, T)`` poses (m, rad) and validity of the other agents;
      length, width: their ``(A,)`` sizes in m.
  Only (agent, step, parked car) triples whose bounding circles meet get the exact
  box test.
  """
  bad = np.zeros(park.num, bool)
  if park.num == 0:
    return bad
  rad_p = 0.5 * np.hypot(park.length, park.width)
  rad_a = 0.5 * np.hypot(length, width)
  ai, ti = np.nonzero(valid)
  # Every (agent, step) against every parked car: a few thousand by a few tens.
  d2 = ((x[ai, ti][:, None] - park.x[None, :]) ** 2
        + (y[ai, ti][:, None] - park.y[None, :]) ** 2)
  m, pk = np.nonzero(d2 < (rad_a[ai][:, None] + rad_p[None, :]) ** 2)
  if len(m):
    a, t = ai[m], ti[m]
    ca = safety.box_corners(x[a, t], y[a, t], length[a], width[a], yaw[a, t])
    cp = safety.box_corners(park.x[pk], park.y[pk], park.length[pk], park.width[pk],
                            park.yaw[pk])
    bad[pk[safety.box_overlap(ca, cp)]] = True
  return bad


def to_state(rng: np.random.Generator, road: RoadMap, tab: RouteTable, roll: Rollout,
             lights: dict[int, np.ndarray], start: int, config: GeneratorConfig,
             noise_rng: np.random.Generator | None = None, spots: Spots | None = None,
             park_rng: np.random.Generator | None = None) -> SimulatorState:
  """Builds the padded ``SimulatorState`` from a rollout over the logged window.

  Args:
    rng: the scenario's generator (sensor noise, object selection, ids).
    road, tab, roll, lights: map, route table, rollout ``(A, T)`` and signal plan.
    start: first logged step of the rollout's signal plan.
    config: sizes and noise settings.
    noise_rng: a separate generator for the rare noise events, so that asking for
      them leaves the rest of the scenario unchanged (default: a fixed seed).
    spots: candidate parking spots (None: no parked cars).
    park_rng: the generator choosing the parked cars among ``spots`` (default: a
      fixed seed).
  """
  noise_rng = np.random.default_rng(0) if noise_rng is None else noise_rng
  park_rng = np.random.default_rng(1) if park_rng is None else park_rng
  t = config.num_timesteps
  x, y, yaw, vx, vy = sensed_poses(rng, tab, roll, config)
  ag = roll.agents
  current = min(10, t - 1)
  sdc = choose_sdc(rng, x, y, roll.active, ag.type, roll.v, current, road.center)
  valid = track(x, y, roll.active, sdc, config.track_radius)
  # Drop one agent of every overlapping pair: logs are collision free unless noise is
  # asked for (added below, on the final objects). Only logged agents matter.
  for _ in range(4):
    pairs = safety.overlapping_pairs(x, y, yaw, ag.length, ag.width, valid)
    if not len(pairs):
      break
    # Drop the agent of each pair that was seen for fewer steps (arrivals), never the SDC.
    steps = valid.sum(1)
    steps[sdc] = t + 1
    drop = np.where(steps[pairs[:, 0]] < steps[pairs[:, 1]], pairs[:, 0], pairs[:, 1])
    valid[drop] = False

  # Parked cars near the SDC's path: as many as the scene's drawn share asks for next
  # to the moving vehicles that will fill the object slots (the nearest to the SDC).
  closest = np.where(valid, np.hypot(x - x[sdc], y - y[sdc]), np.inf).min(axis=1)
  nearest = np.argsort(closest, kind='stable')[:min(int(valid.any(1).sum()),
                                                    config.num_objects)]
  park = (Spots.empty() if spots is None or not config.parked_vehicles
          else choose_parked(park_rng, spots, np.stack([x[sdc], y[sdc]], -1),
                             config.track_radius, int((ag.type[nearest] == VEHICLE).sum()),
                             config.parked_share))
  # A parked car touching anyone (it cannot, by the strips' layout) is not parked.
  park = park.take(np.flatnonzero(~parked_touching(park, x, y, yaw, ag.length, ag.width,
                                                    valid)))
  agents = with_parked(noise.Objects(x=x, y=y, yaw=yaw, vel_x=vx, vel_y=vy, valid=valid,
                                     length=ag.length, width=ag.width, height=ag.height,
                                     types=ag.type), park)
  routes = np.concatenate([roll.route, np.full((park.num, t), -1)])
  parked = np.arange(len(routes)) >= len(roll.route)
  x, y, valid = agents.x, agents.y, agents.valid
  order, modeled = select_objects(rng, x, y, valid, sdc, config.num_objects, current,
                                  config.max_tracks_to_predict, ~parked)
  ids = rng.choice(100000, size=len(order), replace=False).astype(np.int32)
  obj = noise.Objects(**{k: v[order] for k, v in vars(agents).items()})
  # The object's route: at the current step, else where it is first seen.
  ov = obj.valid
  at = np.where(ov[:, current], current, np.argmax(ov, axis=1))
  route = routes[order, at]

  polys = road.lane_polylines() + road.features
  lines = geo.resample_many([p.xyz for p in polys], config.map_spacing)
  polys = [Polyline(ln, p.type, p.id) for ln, p in zip(lines, polys)]
  anchor = np.array([obj.x[0, current], obj.y[0, current]])
  logged = np.stack([obj.x[ov], obj.y[ov]], -1)
  rank = np.broadcast_to(np.arange(len(ov))[:, None], ov.shape)[ov]
  polys, held = crop_polylines(polys, logged, rank, config.num_roadgraph_points)
  if held < len(ov) and not config.log_off_map:
    # The budget holds the map around the first objects only (long fast roads): log
    # those alone, as a log and its map cover the same ground (and the off-road metric
    # needs the road edges beside every object).
    obj = noise.Objects(**{k: v[:held] for k, v in vars(obj).items()})
    modeled, route, ids = modeled[:held], route[:held], ids[:held]

  # Rare noise events (each checked to be the log's only one of its kind).
  u_collide, u_park = noise_rng.random(2)
  parked_row = None
  if u_collide < config.collision_noise_rate or u_park < config.offroad_noise_rate:
    edges = safety.RoadEdges([p.xyz for p in polys], [p.type for p in polys])
    if u_park < config.offroad_noise_rate:
      boundary = [p.xyz for p in polys if p.type == EDGE]
      over = noise.park_over_curb(noise_rng, obj, anchor, edges, boundary)
      if over is not None:
        # All slots used: the parked car replaces the object farthest from the SDC.
        keep = min(len(ids), config.num_objects - 1)
        rows = np.r_[np.arange(keep), len(ids)]
        obj = noise.Objects(**{k: v[rows] for k, v in vars(over).items()})
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
