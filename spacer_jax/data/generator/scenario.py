"""The generation pipeline: seed -> map -> signals -> routes -> traffic (+ parked cars)
-> state."""

from __future__ import annotations

import numpy as np

from spacer_jax.data.generator import assemble, maps, parking, population, signals, traffic
from spacer_jax.data.generator.config import GeneratorConfig
from spacer_jax.data.generator.lanes import build_route_table, enumerate_routes
from spacer_jax.sim.datatypes import SimulatorState

# family -> builder(rng, extent) of its RoadMap.
FAMILY_BUILDERS = {
    'straight': lambda rng, ext: maps.straight_road(rng, ext, curved=False),
    'curved': lambda rng, ext: maps.straight_road(rng, ext, curved=True),
    'intersection': lambda rng, ext: maps.junction(rng, ext, arms=4),
    't_junction': lambda rng, ext: maps.junction(rng, ext, arms=3),
    'merge': maps.merge,
    'roundabout': maps.roundabout,
}


def sample_family(rng: np.random.Generator, config: GeneratorConfig) -> str:
  """Draws a map family name according to ``config.families`` / ``family_weights``."""
  fams = [f for f in config.families if f in FAMILY_BUILDERS]
  if not fams:
    raise ValueError(f'none of {config.families} is implemented yet.')
  w = (np.ones(len(config.families)) if config.family_weights is None
       else np.asarray(config.family_weights, np.float64))
  w = np.array([wi for f, wi in zip(config.families, w) if f in FAMILY_BUILDERS])
  return fams[rng.choice(len(fams), p=w / w.sum())]


def generate_scenario(seed: int, config: GeneratorConfig = GeneratorConfig()
                      ) -> SimulatorState:
  """Generates one scenario, a deterministic function of ``(seed, config)``.

  Returns:
    An unbatched ``SimulatorState`` with ``config.num_objects`` object slots,
    ``config.num_timesteps`` steps at 10 Hz (``timestep`` 0, as loaders return it) and
    ``config.num_roadgraph_points`` map points.
  """
  rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5ACE]))
  family = sample_family(rng, config)
  extent = maps.MapExtent(horizon_s=config.num_timesteps * traffic.DT,
                          radius_m=config.track_radius)
  road = FAMILY_BUILDERS[family](rng, extent)
  warm = int(round(config.warmup_seconds / traffic.DT))
  steps = warm + config.num_timesteps
  lights = signals.phase_plan(rng, road.signal_groups, steps)
  starts = road.entries + road.ped_entries
  routes = enumerate_routes(road.lanes, starts, max_lanes=16)
  tab = build_route_table(road.lanes, routes, 0.5, road.zone_pairs)
  # Simulated agents: the objects plus some beyond what the log shows (parked cars are
  # extra: they are not simulated).
  max_agents = config.num_objects + 16
  place = population.populate(rng, road, tab, max_agents, steps, config.density,
                              config.pedestrians, config.cyclists)
  agents = traffic.sample_agents(rng, place.type)
  incidents = None
  if config.incident_rate > 0:
    # Own stream: the scene's map, population and drivers stay those of the same seed
    # without incidents.
    inc_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5ACE, 3]))
    if inc_rng.random() < config.incident_rate:
      incidents = traffic.sample_incidents(inc_rng, place.type, place.active, place.v,
                                           warm, steps)
  sim = traffic.TrafficSim(rng, road, tab, agents, place.route, place.s, place.v,
                           place.active, place.spawn_step, lights, incidents)
  route, s, v, d, dd, act = sim.run(steps)
  win = slice(warm, steps)
  roll = traffic.Rollout(route=route[:, win], s=s[:, win], v=v[:, win], d=d[:, win],
                         d_dot=dd[:, win], active=act[:, win], agents=agents)
  # Noise events draw from their own stream: asking for them changes nothing else;
  # parked cars from theirs, so turning them off leaves the traffic as it was.
  noise_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5ACE, 1]))
  park_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5ACE, 2]))
  spots = parking.parking_spots(park_rng, road)
  return assemble.to_state(rng, road, tab, roll, lights, warm, config, noise_rng, spots,
                           park_rng)
