"""Held-out tokenisation error of k-disk vocabularies versus the vocabulary size K.

Builds one vocabulary per K from generated build scenarios (seeds 0..B-1), tokenises
held-out generated logs (seeds from 100000, never seen by the builder) rolling forward
from the reconstruction, and reports the mean box-corner error per agent type, with the
build time. ``--smart`` adds SMART's 2048 tokens of 0.5 s.

  python benchmarks/tokenization_error.py [--ks 50,100,200,400] [--smart] \
      [--build 64] [--eval 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

from spacer_jax.data.generator import GeneratorConfig, generate_scenario  # noqa: E402
from spacer_jax.tokens import builder  # noqa: E402
from spacer_jax.tokens.tokenize import mean_error_by_type  # noqa: E402

EVAL_FIRST_SEED = 100_000


def run_case(build_states, eval_states, num_tokens: int, steps: int) -> dict:
  start = time.perf_counter()
  cpu = time.process_time()
  segments = builder.extract_segments(build_states, steps)
  vocab, meta = builder.build_vocabulary(
      segments, builder.BuildConfig(num_tokens=num_tokens, steps_per_token=steps))
  build_s, build_cpu = time.perf_counter() - start, time.process_time() - cpu
  errors = mean_error_by_type(vocab, eval_states)
  return {'num_tokens': num_tokens, 'steps_per_token': steps,
          'token_seconds': round(0.1 * steps, 3), 'build_seconds': round(build_s, 2),
          'build_cpu_seconds': round(build_cpu, 2),
          'tolerance_m': {t['type']: round(t['tolerance_m'], 4) for t in meta['types']},
          'held_out': errors}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--ks', default='50,100,200,400', help='comma-separated K at S=2')
  parser.add_argument('--smart', action='store_true', help='also K=2048, S=5 (0.5 s)')
  parser.add_argument('--build', type=int, default=64, help='build scenarios')
  parser.add_argument('--eval', type=int, default=16, help='held-out scenarios')
  parser.add_argument('--json', default=None, help='write the results here')
  args = parser.parse_args()

  gen = GeneratorConfig(num_objects=128, num_roadgraph_points=1000, log_off_map=True)
  build_states = [generate_scenario(s, gen) for s in range(args.build)]
  eval_states = [generate_scenario(s, gen)
                 for s in range(EVAL_FIRST_SEED, EVAL_FIRST_SEED + args.eval)]
  cases = [(int(k), 2) for k in args.ks.split(',') if k]
  if args.smart:
    cases.append((2048, 5))
  results = []
  print(f'{"K":>5} {"S":>2} {"build s":>8} {"vehicle":>8} {"ped":>8} {"cyclist":>8} {"all":>8}'
        '  (held-out mean corner error, m)')
  for num_tokens, steps in cases:
    r = run_case(build_states, eval_states, num_tokens, steps)
    results.append(r)
    e = r['held_out']
    print(f'{num_tokens:5d} {steps:2d} {r["build_seconds"]:8.1f} '
          f'{e["vehicle"]["mean_error_m"]:8.4f} {e["pedestrian"]["mean_error_m"]:8.4f} '
          f'{e["cyclist"]["mean_error_m"]:8.4f} {e["all"]["mean_error_m"]:8.4f}', flush=True)
  out = {'build_scenarios': args.build, 'eval_scenarios': args.eval,
         'eval_first_seed': EVAL_FIRST_SEED, 'results': results}
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(out, f, indent=1)


if __name__ == '__main__':
  main()
