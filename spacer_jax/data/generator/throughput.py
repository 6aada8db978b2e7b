"""Scenario-generation throughput with 1..N worker processes.

  python -m spacer_jax.data.generator.throughput --workers 1 2 --scenarios 40

prints scenarios/s including worker start-up and in steady state (after the first
result), plus the CPU time per scenario of the in-process path.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from spacer_jax.data.generator.config import GeneratorConfig
from spacer_jax.data.generator.parallel import generate_parallel, tf_example_bytes
from spacer_jax.data.generator.scenario import generate_scenario
from spacer_jax.sim.datatypes import SimulatorState


def measure(num_scenarios: int, num_workers: int, config: GeneratorConfig,
            map_fn: Callable[[SimulatorState], Any] | None = None) -> dict[str, float]:
  """Times ``generate_parallel`` over seeds ``0..num_scenarios-1``.

  Returns:
    ``total_per_s`` (scenarios/s including worker start-up), ``steady_per_s`` (after
    the first result arrived), ``startup_s`` (seconds to the first result) and
    ``cpu_ms`` (this process's CPU time per scenario; the whole cost with 1 worker).
  """
  if num_scenarios < 2:
    raise ValueError(f'num_scenarios must be >= 2, got {num_scenarios}.')
  t0, c0 = time.perf_counter(), time.process_time()
  t_first = t0
  for i, _ in enumerate(generate_parallel(range(num_scenarios), config, num_workers,
                                          map_fn=map_fn)):
    if i == 0:
      t_first = time.perf_counter()
  t1 = time.perf_counter()
  return {'total_per_s': num_scenarios / (t1 - t0),
          'steady_per_s': (num_scenarios - 1) / (t1 - t_first),
          'startup_s': t_first - t0,
          'cpu_ms': (time.process_time() - c0) / num_scenarios * 1e3}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
  parser.add_argument('--scenarios', type=int, default=40)
  parser.add_argument('--num_objects', type=int, default=64)
  parser.add_argument('--tf_example', action='store_true',
                      help='also serialise each state to tf.Example bytes (in the workers)')
  args = parser.parse_args()
  cfg = GeneratorConfig(num_objects=args.num_objects)
  fn = tf_example_bytes if args.tf_example else None
  # Warm the in-process path (imports, JAX's first transfers) before timing it.
  warm = generate_scenario(10**6, cfg)
  if fn is not None:
    fn(warm)
  for w in args.workers:
    r = measure(args.scenarios, w, cfg, fn)
    print(f'workers={w} scenarios={args.scenarios} num_objects={args.num_objects}'
          f'{" +tf.Example" if fn else ""}: {r["steady_per_s"]:.2f} scenarios/s steady, '
          f'{r["total_per_s"]:.2f} incl. start-up ({r["startup_s"]:.1f} s to the first); '
          f'main-process CPU {r["cpu_ms"]:.0f} ms/scenario', flush=True)


if __name__ == '__main__':
  main()
