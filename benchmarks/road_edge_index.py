"""Road-edge index: build cost per scenario against query cost and certified answers.

For each index configuration (``RoadEdgeIndexConfig``) on generated scenarios: the
build time per scenario (batch, best of ``--repeats``), the query time per point, the
share of queries the index certifies exact, and the share whose signed distance differs
from brute force by more than 0.1 mm (uncertified answers can). Queries are logged
object centres every 0.5 s, moved by N(0, 5 m) in x and y (near roads, as boxes are).

  python benchmarks/road_edge_index.py --scenes 8 --rg-points 20000 --json OUT
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import timing_utils

from spacer_jax.data.generator import GeneratorConfig, generate_batch
from spacer_jax.sim.metrics import road_edges

R = road_edges.RoadEdgeIndexConfig
CONFIGS = {
    'default (G 128, K 48; 16 x 16 blocks of 512)': R(),
    'G 128, K 48; levels 4/2048, 16/512, 64/128': R(
        coarse_levels=((4, 2048), (16, 512), (64, 128))),
    'environment (G 64, K 96; levels 4/2048, 16/512)': road_edges.RESET_INDEX_CONFIG,
    'G 64, K 96; levels 2/2048, 8/768, 32/192': R(
        grid_size=64, candidates_per_cell=96, coarse_levels=((2, 2048), (8, 768), (32, 192))),
    'G 64, K 64; levels 4/1024, 16/256': R(
        grid_size=64, candidates_per_cell=64, coarse_levels=((4, 1024), (16, 256))),
    'G 32, K 96; levels 4/1024, 16/256': R(
        grid_size=32, candidates_per_cell=96, coarse_levels=((4, 1024), (16, 256))),
}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--scenes', type=int, default=8)
  parser.add_argument('--rg-points', type=int, default=20000)
  parser.add_argument('--objects', type=int, default=64)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--json', help='write the results to this JSON file')
  args = parser.parse_args()

  scenes = generate_batch(range(100, 100 + args.scenes),
                          GeneratorConfig(num_objects=args.objects,
                                          num_roadgraph_points=args.rg_points))
  rg = scenes.roadgraph_points
  log = scenes.log_trajectory
  xyz = jnp.stack([log.x, log.y, log.z], -1)[:, :, ::5].reshape(args.scenes, -1, 3)
  valid = np.asarray(log.valid[:, :, ::5].reshape(args.scenes, -1))
  jitter = jax.random.normal(jax.random.PRNGKey(0), xyz[..., :2].shape) * 5.0
  queries = xyz + jnp.concatenate([jitter, jnp.zeros_like(xyz[..., :1])], -1)
  brute = jax.jit(road_edges.signed_distance_to_road_edge_brute_force)(queries, rg)
  query = jax.jit(lambda q, index: road_edges.signed_distance_to_road_edge(q, rg, index))

  rows = {}
  for name, config in CONFIGS.items():
    build = jax.jit(lambda r, c=config: road_edges.build_road_edge_index(r, c))
    build_s = timing_utils.best_time(build, rg, repeats=args.repeats) / args.scenes
    index = build(rg)
    query_s = timing_utils.best_time(query, queries, index, repeats=args.repeats)
    fast = query(queries, index)
    wrong = np.abs(np.asarray(fast.distance) - np.asarray(brute.distance)) > 1e-4
    rows[name] = {
        'build_ms_per_scene': 1e3 * build_s,
        'query_ns_per_point': 1e9 * query_s / queries.shape[0] / queries.shape[1],
        'certified_exact': float(np.asarray(fast.exact)[valid].mean()),
        'differs_from_brute_force': float(wrong[valid].mean()),
        'bytes_per_scene': int(sum(x.size * x.dtype.itemsize for x in
                                   jax.tree_util.tree_leaves(index)) // args.scenes),
    }
    r = rows[name]
    print(f"{name}: build {r['build_ms_per_scene']:.1f} ms/scene | query "
          f"{r['query_ns_per_point']:.0f} ns/point | certified {r['certified_exact']:.4f} | "
          f"differs {r['differs_from_brute_force']:.5f} | {r['bytes_per_scene'] / 1e6:.1f} MB",
          flush=True)
  result = {'scenes': args.scenes, 'roadgraph_points': args.rg_points,
            'queries_per_scene': int(queries.shape[1]), 'configs': rows}
  if args.json:
    timing_utils.report_json(result, args.json)


if __name__ == '__main__':
  main()
