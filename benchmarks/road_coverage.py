"""Does the SPACER policy see the road edges near it? Coverage of its road observation.

At the logged positions of every vehicle (every ``--stride`` steps of generated cpu
scenes), the nearest road edge of the whole map (every roadgraph point of a road-edge
type) is compared with the nearest road-edge point among the points the observation
keeps (``spacer.observation.observed_road_points``). A position MISSES when the map has
a road edge within ``--reach`` m and the observation's nearest one is more than
``--slack`` m farther (or absent); the slack allows for the observation's 2 m point
spacing. Reported for the cpu config as shipped before (512 prepared points, nearest of
any type) and as it is now.

  python benchmarks/road_coverage.py --scenes 32 [--json OUT]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from timing_utils import report_json

from experiments.configs import spacer as spacer_configs
from spacer_jax.data import generator
from spacer_jax.sim.builders import stack_states
from spacer_jax.sim.datatypes.roadgraph import is_road_edge
from spacer_jax.spacer.observation import (
  ObservationConfig,
  is_edge_point,
  observed_road_points,
  prepare_road_points,
)


def coverage(config: ObservationConfig, states, reach: float = 8.0, slack: float = 1.0,
             stride: int = 10) -> dict[str, float]:
  """Miss rate and counts of ``config``'s road observation on ``states`` ``(B,)``."""
  road = jax.jit(lambda s: prepare_road_points(s, config))(states)
  log = states.log_trajectory
  rg = states.roadgraph_points
  steps = np.arange(0, log.num_timesteps, stride)

  @jax.jit
  def one(road_b, rg_b, x, y, ok):
    idx, found = observed_road_points(x, y, road_b, config)
    edge = is_edge_point(road_b)
    seen = found & edge[idx]
    d_seen = jnp.where(seen, jnp.hypot(road_b.x[idx] - x[:, None],
                                       road_b.y[idx] - y[:, None]), jnp.inf).min(-1)
    map_edge = rg_b.valid & is_road_edge(rg_b.types)
    d_map = jnp.where(map_edge[None], jnp.hypot(rg_b.x[None] - x[:, None],
                                                rg_b.y[None] - y[:, None]), jnp.inf).min(-1)
    near = ok & (d_map <= reach)
    return jnp.sum(near), jnp.sum(near & (d_seen > d_map + slack)), jnp.sum(road_b.valid)

  near_total, missed, prepared = 0, 0, []
  vehicles = np.asarray(states.object_metadata.object_types) == 1
  for b in range(states.shape[0]):
    road_b = jax.tree.map(lambda a, b=b: a[b], road)
    rg_b = jax.tree.map(lambda a, b=b: a[b], rg)
    prepared.append(int(np.sum(np.asarray(road_b.valid))))
    for t in steps:
      ok = jnp.asarray(np.asarray(log.valid[b, :, t]) & vehicles[b])
      n, m, _ = one(road_b, rg_b, log.x[b, :, t], log.y[b, :, t], ok)
      near_total += int(n)
      missed += int(m)
  return {'positions_with_edge_in_reach': near_total, 'missed': missed,
          'miss_rate': missed / max(near_total, 1),
          'prepared_points_mean': float(np.mean(prepared))}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--scenes', type=int, default=32)
  parser.add_argument('--first_seed', type=int, default=10_000_000)
  parser.add_argument('--reach', type=float, default=8.0)
  parser.add_argument('--slack', type=float, default=1.0)
  parser.add_argument('--stride', type=int, default=10)
  parser.add_argument('--json', default='')
  args = parser.parse_args()
  gen = generator.GeneratorConfig(num_objects=32, num_roadgraph_points=6000)
  states = stack_states([generator.generate_scenario(args.first_seed + i, gen)
                         for i in range(args.scenes)])
  now = ObservationConfig(**spacer_configs.get_config('cpu').obs)
  before = ObservationConfig(**{**now.__dict__, 'max_prepared_points': 512,
                                 'num_edge_points': 0})
  whole_map_only = ObservationConfig(**{**now.__dict__, 'num_edge_points': 0})
  out = {name: coverage(cfg, states, args.reach, args.slack, args.stride)
         for name, cfg in (('before (512 prepared, nearest of any type)', before),
                           ('whole map, nearest of any type', whole_map_only),
                           ('now (cpu config)', now))}
  report_json(out, args.json)


if __name__ == '__main__':
  main()
