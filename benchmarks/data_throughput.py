"""Data throughput: scenario generation, serialisation and loading, in scenarios/s.

  python benchmarks/data_throughput.py                    # 64 objects, 20000 rg points
  python benchmarks/data_throughput.py --scenarios 8 --load-scenarios 32 --json out.json

Cases:
  generate_1_worker    generate_scenario in this process (numpy on the host)
  generate_2_workers   the writer's spawn-based pool with 2 workers; ``scenarios_per_s``
                       counts from the first result on (pool start-up, mostly imports,
                       is reported as ``startup_s``)
  serialize            state -> WOMD tf.Example bytes (``state_to_example``)
  parse                bytes -> SimulatorState (``example_to_state``)
  write_dataset        write_split end to end (1 worker: generate, serialise, write shards)
  load_batched_16      spacer_jax.data.womd.make_dataset(..., batch_size=16) over
                       TFRecords: read, decode, stack
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

import numpy as np  # noqa: E402

from spacer_jax.data import womd, writer  # noqa: E402
from spacer_jax.data.womd import tf_example  # noqa: E402


def _rate(count: int, seconds: float) -> float:
  return count / seconds if seconds > 0 else float('nan')


def bench_generate(config, n: int, num_workers: int) -> dict:
  t0 = time.perf_counter()
  first = None
  for _ in writer.generate_states(range(n), 'train', 0, config, num_workers):
    if first is None:
      first = time.perf_counter()
  end = time.perf_counter()
  if num_workers == 1:
    return {'scenarios': n, 'seconds': end - t0, 'scenarios_per_s': _rate(n, end - t0)}
  # The first result pays the pool start-up; count the rest against the time after it.
  return {'scenarios': n, 'seconds': end - t0, 'startup_s': first - t0,
          'scenarios_per_s': _rate(n - 1, end - first)}


def bench_codec(config, n: int) -> tuple[dict, dict, list[bytes]]:
  states = [s for _, s in writer.generate_states(range(n), 'train', 0, config)]
  t0 = time.perf_counter()
  data = [tf_example.state_to_example(s, scenario_id=str(i)).SerializeToString(
      deterministic=True) for i, s in enumerate(states)]
  t1 = time.perf_counter()
  for d in data:
    tf_example.example_to_state(d, config.num_objects, config.num_roadgraph_points)
  t2 = time.perf_counter()
  size = float(np.mean([len(d) for d in data]))
  return ({'scenarios': n, 'seconds': t1 - t0, 'scenarios_per_s': _rate(n, t1 - t0),
           'mean_record_bytes': size},
          {'scenarios': n, 'seconds': t2 - t1, 'scenarios_per_s': _rate(n, t2 - t1)}, data)


def bench_write(n: int, num_objects: int, rg_points: int, tmp: str) -> dict:
  config = writer.WriterConfig(out_dir=os.path.join(tmp, 'write'), num_scenarios=n,
                               num_objects=num_objects, num_roadgraph_points=rg_points,
                               shard_size=max(n // 2, 1))
  t0 = time.perf_counter()
  writer.write_split(config, progress=False)
  seconds = time.perf_counter() - t0
  return {'scenarios': n, 'seconds': seconds, 'scenarios_per_s': _rate(n, seconds)}


def bench_load(data: list[bytes], n: int, num_objects: int, rg_points: int, tmp: str
               ) -> dict:
  # Records repeat the generated ones: loading cost does not depend on the content.
  path = os.path.join(tmp, 'load.tfrecord')
  womd.write_records(path, (data[i % len(data)] for i in range(n)))
  ds = womd.make_dataset(path, batch_size=16, max_num_objects=num_objects,
                         max_num_rg_points=rg_points, num_hosts=1, host_index=0)
  t0 = time.perf_counter()
  count = sum(batch.log_trajectory.x.shape[0] for batch in ds)
  seconds = time.perf_counter() - t0
  return {'scenarios': count, 'seconds': seconds, 'scenarios_per_s': _rate(count, seconds)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--objects', type=int, default=64)
  parser.add_argument('--rg-points', type=int, default=20000)
  parser.add_argument('--scenarios', type=int, default=16,
                      help='scenarios per generation / serialisation case')
  parser.add_argument('--load-scenarios', type=int, default=64,
                      help='scenarios read in the loading case')
  parser.add_argument('--json', help='write the results to this JSON file')
  args = parser.parse_args()
  config = writer.WriterConfig(out_dir='', num_scenarios=args.scenarios,
                               num_objects=args.objects,
                               num_roadgraph_points=args.rg_points).generator_config()
  print(f'{os.cpu_count()} cpus ({platform.processor() or platform.machine()}); '
        f'{args.objects} objects, {args.rg_points} roadgraph points')
  results = {}
  results['generate_1_worker'] = bench_generate(config, args.scenarios, 1)
  results['generate_2_workers'] = bench_generate(config, args.scenarios, 2)
  results['serialize'], results['parse'], data = bench_codec(config, args.scenarios)
  with tempfile.TemporaryDirectory() as tmp:
    results['write_dataset'] = bench_write(args.scenarios, args.objects, args.rg_points,
                                           tmp)
    results['load_batched_16'] = bench_load(data, args.load_scenarios, args.objects,
                                            args.rg_points, tmp)
  print(f'{"case":<22}{"scenarios":>10}{"seconds":>10}{"scenarios/s":>13}')
  for name, r in results.items():
    print(f'{name:<22}{r["scenarios"]:>10}{r["seconds"]:>10.2f}'
          f'{r["scenarios_per_s"]:>13.2f}')
  print(f'pool start-up (2 workers): {results["generate_2_workers"]["startup_s"]:.1f} s; '
        f'mean record: {results["serialize"]["mean_record_bytes"] / 1e6:.2f} MB')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'objects': args.objects, 'rg_points': args.rg_points,
                 'cpus': os.cpu_count(), 'results': results}, f, indent=1)
    print(f'wrote {args.json}')


if __name__ == '__main__':
  main()
