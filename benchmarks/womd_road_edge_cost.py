"""Road-edge query cost on the real WOMD map: as recorded (today's Scenario reader) and
as resampled to 0.5 m (the reader before), in one run.

The WOSAC box-corner queries of 32 constant-velocity-plus-noise rollouts of every object
valid at the current step of the shared Scenario sample (they leave the map, so the
fallback works too), answered by the certified index with the realism budget, best of
``--repeats``. Issue 27 asks the recorded map to cost within 10% of the resampled one.

  python benchmarks/womd_road_edge_cost.py [--repeats 5] [--json OUT]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from timing_utils import best_time, report_json

from spacer_jax.data.womd import records, scenario_proto
from spacer_jax.eval import realism, road_edge
from spacer_jax.sim import builders
from spacer_jax.sim.datatypes import INIT_STEPS

SCENARIO_FILE = (Path(__file__).parents[1] / '..' / 'shared' / 'data' / 'womd_samples'
                 / 'motion_data_one_scenario.tfrecord')


def _queries(state, rollouts: int) -> np.ndarray:
  log = state.log_trajectory
  now = INIT_STEPS - 1
  ok = np.asarray(log.valid[:, now])
  t = np.arange(1, log.x.shape[-1] - now) * 0.1
  rng = np.random.default_rng(0)
  out = []
  for _ in range(rollouts):
    drift = rng.normal(0, 1.5, (log.x.shape[0], 2, 1)) * t / t[-1]
    box = {'x': jnp.asarray(log.x[:, now:now + 1] + log.vel_x[:, now:now + 1] * t
                            + drift[:, 0]),
           'y': jnp.asarray(log.y[:, now:now + 1] + log.vel_y[:, now:now + 1] * t
                            + drift[:, 1])}
    for n in ('z', 'yaw', 'length', 'width', 'height'):
      box[n] = jnp.broadcast_to(getattr(log, n)[:, now:now + 1], box['x'].shape)
    out.append(np.asarray(realism._road_query(box))[ok].reshape(-1, 3))
  return np.concatenate(out)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--rollouts', type=int, default=32)
  parser.add_argument('--json', default='')
  args = parser.parse_args()
  if not SCENARIO_FILE.exists():
    raise SystemExit(f'{SCENARIO_FILE} not found (the shared WOMD samples)')
  (_, data), = list(records.read_records(str(SCENARIO_FILE)))
  scenario = scenario_proto.parse_scenario(data)
  maps = {'recorded': scenario_proto.raw_to_state(scenario_proto.scenario_to_raw(
      scenario), 128, 40000)}
  with mock.patch.object(scenario_proto, 'subdivide_polyline', builders.resample_polyline):
    maps['resampled'] = scenario_proto.raw_to_state(scenario_proto.scenario_to_raw(
        scenario), 128, 40000)
  budget = realism.RealismOptions().road_edge_fallback
  query = jnp.asarray(_queries(maps['recorded'], args.rollouts))
  distances = jax.jit(road_edge.signed_distance_to_road_edges, static_argnums=2)
  result = {'queries': int(query.shape[0])}
  for name, state in maps.items():
    edges = road_edge.build_road_edge_segments(state.roadgraph_points)
    _, exact = road_edge.indexed_road_edge_distances(query, edges)
    run = lambda q, e: jax.block_until_ready(distances(q, e, budget))
    run(query, edges)  # compile
    seconds = best_time(run, query, edges, repeats=args.repeats)
    _, unresolved = run(query, edges)
    result[name] = {'seconds': seconds, 'uncertified_by_index': int((~exact).sum()),
                    'unresolved': int(unresolved),
                    'road_edge_points': int(np.sum(np.isin(
                        np.asarray(state.roadgraph_points.types), (14, 15, 16))
                        & np.asarray(state.roadgraph_points.valid)))}
    print(f'{name}: {seconds * 1e3:.1f} ms for {query.shape[0]} queries, '
          f'{result[name]["uncertified_by_index"]} uncertified by the index, '
          f'{int(unresolved)} unresolved', flush=True)
  result['recorded_over_resampled'] = (result['recorded']['seconds']
                                       / result['resampled']['seconds'])
  print(f'recorded / resampled: {result["recorded_over_resampled"]:.3f}')
  report_json(result, args.json)


if __name__ == '__main__':
  main()
