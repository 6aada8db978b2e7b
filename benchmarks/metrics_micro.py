"""Micro-benchmark of the simulator metrics on CPU (per scenario-step timings).

Builds B random WOMD-like scenarios (20000 roadgraph points, ~5000 road edges, 64
objects near the edges), then times, batched over the scenarios with ``jax.vmap`` and
jitted: the road-edge index build, overlap + offroad with the index (the hot path of a
rollout), the brute-force offroad (Waymax's algorithm), and every registry metric.
Each timing is the best of ``--repeats`` runs (the machine is shared, so the minimum is
the stable number), divided by B.

  python benchmarks/metrics_micro.py [--batch 16] [--objects 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from timing_utils import best_time  # noqa: E402

from spacer_jax.sim import builders  # noqa: E402
from spacer_jax.sim.metrics import offroad, overlap, registry, road_edges, testing  # noqa: E402


def make_batch(batch: int, num_objects: int, num_points: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  states = []
  for _ in range(batch):
    rg = testing.random_map(rng, num_points=num_points)
    ob = testing.objects_near_edges(rng, rg, num_objects)
    rep = lambda a: np.repeat(a[:, None], 11, axis=1)
    traj = builders.trajectory_from_arrays(
        x=rep(ob['x']), y=rep(ob['y']), z=rep(ob['z']), yaw=rep(ob['yaw']),
        valid=np.ones((num_objects, 11), bool), length=ob['length'], width=ob['width'])
    meta = builders.metadata_from_arrays(np.ones(num_objects, np.int32))
    state = builders.make_state(traj, meta, rg)
    states.append(state.replace(timestep=jnp.asarray(10, jnp.int32)))
  return builders.stack_states(states)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--objects', type=int, default=64)
  parser.add_argument('--points', type=int, default=20000)
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--skip_brute_force', action='store_true')
  parser.add_argument('--json', type=str, default=None, help='write results here')
  args = parser.parse_args()

  state = make_batch(args.batch, args.objects, args.points)
  b = args.batch
  edges = int(jnp.sum(state.roadgraph_points.valid & (
      (state.roadgraph_points.types == 15) | (state.roadgraph_points.types == 16))))
  rows = []

  def record(name, seconds, note=''):
    rows.append(dict(name=name, us_per_scenario=seconds / b * 1e6, note=note))

  build = jax.jit(jax.vmap(road_edges.build_road_edge_index))
  record('road_edge_index build', best_time(build, state.roadgraph_points,
                                            repeats=max(args.repeats // 4, 3)),
         'once per scenario (reset)')
  index = build(state.roadgraph_points)
  fast = state.replace(road_edge_index=index)

  hot = jax.jit(jax.vmap(lambda s: (overlap.overlap(s), offroad.offroad(s))))
  record('overlap + offroad (index)', best_time(hot, fast, repeats=args.repeats),
         'per scenario-step, the target')
  record('offroad (index)', best_time(jax.jit(jax.vmap(offroad.offroad)), fast,
                                     repeats=args.repeats))
  record('overlap', best_time(jax.jit(jax.vmap(overlap.overlap)), fast,
                              repeats=args.repeats))
  if not args.skip_brute_force:
    record('offroad (brute force)', best_time(jax.jit(jax.vmap(offroad.offroad)), state,
                                              repeats=3), "Waymax's algorithm")
  for name in registry.registered_metrics():
    if name in ('offroad', 'overlap'):
      continue
    fn = jax.jit(jax.vmap(registry.get_metric(name)))
    record(name, best_time(fn, fast, repeats=args.repeats))
  exact = offroad.corner_signed_distances(fast).exact
  meta = dict(batch=b, objects=args.objects, roadgraph_points=args.points,
              road_edge_points_per_scenario=edges / b,
              certified_exact_fraction=float(jnp.mean(exact)),
              backend=jax.default_backend(), cpu_count=os.cpu_count())

  print(f"{'metric':32s} {'us / scenario(-step)':>22s}  note")
  for r in rows:
    print(f"{r['name']:32s} {r['us_per_scenario']:22.1f}  {r['note']}")
  print(json.dumps(meta))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(dict(meta=meta, rows=rows), f, indent=2)


if __name__ == '__main__':
  main()
