"""Simulator throughput: step, step + reward, and full rollouts with reward and metrics.

  python benchmarks/sim_throughput.py                      # the full matrix
  python benchmarks/sim_throughput.py --objects 64 --rg-points 20000 --batch 16
  python benchmarks/sim_throughput.py --json /tmp/sim_throughput.json

Cases (all jitted and vmapped over the batch; bicycle dynamics; every valid object
controlled; the road-edge index is built by ``reset`` outside the timed region):
  step                 one env.step per call
  step_with_reward     env.step + overlap/off-road reward
  rollout_with_reward  an 80-step lax.scan with the reward and the metrics (overlap,
                       off-road, log divergence) each step, each computed once
  reset_rollout_with_reward  (not in the default matrix) ``reset`` inside the timed
                       region, so the road-edge index build counts, then the rollout

``scenario_steps_per_s`` counts simulated steps of whole scenarios;
``agent_steps_per_s`` multiplies by the object slots simulated per scenario. Figures are
the best of ``--repeats`` timed runs after a warm-up (compile) run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from spacer_jax.data import generator  # noqa: E402
from spacer_jax.sim import builders, dynamics  # noqa: E402
from spacer_jax.sim.config import EnvConfig  # noqa: E402
from spacer_jax.sim.datatypes import Action  # noqa: E402
from spacer_jax.sim.env import MultiAgentEnvironment  # noqa: E402
from spacer_jax.sim.rollout import rollout  # noqa: E402

SIZES = ((64, 20000), (128, 30000))
BATCHES = (1, 16, 64)
CASES = ('step', 'step_with_reward', 'rollout_with_reward')
# Cases that start from the scenarios before ``reset`` (which they call themselves).
RESET_CASES = ('reset_rollout_with_reward',)
ROLLOUT_STEPS = 80


def make_batch(num_objects: int, rg_points: int, batch: int, unique: int = 8):
  """Generated scenarios (``unique`` distinct ones tiled to ``batch``), reset."""
  config = generator.GeneratorConfig(num_objects=num_objects,
                                     num_roadgraph_points=rg_points)
  scenarios = [generator.generate_scenario(s, config) for s in range(min(unique, batch))]
  scenarios = [scenarios[i % len(scenarios)] for i in range(batch)]
  return builders.stack_states(scenarios)


def make_env() -> MultiAgentEnvironment:
  """Bicycle dynamics, every valid object controlled, overlap / off-road reward and the
  overlap, off-road and log-divergence metrics."""
  return MultiAgentEnvironment(
      dynamics.get_dynamics_model('bicycle'),
      EnvConfig(controlled_object='valid', metrics=('overlap', 'offroad', 'log_divergence'),
                rewards={'overlap': -1.0, 'offroad': -1.0}))


def build_cases(env: MultiAgentEnvironment):
  """Compiled functions of (state, action) for each case."""
  def step(state, action):
    return env.step(state, action)

  def step_with_reward(state, action):
    next_state = env.step(state, action)
    return next_state, env.reward(next_state)

  def rollout_with_reward(state, action):
    actor = lambda s, rng: action  # noqa: E731 - constant (zero) bicycle action
    return rollout(env, state, actor, jax.random.PRNGKey(0), num_steps=ROLLOUT_STEPS)

  def reset_rollout_with_reward(state, action):
    out = rollout_with_reward(env.reset(state), action)
    # The next call starts from an un-reset state again (the index is rebuilt).
    return out.replace(final_state=out.final_state.replace(road_edge_index=None))

  # The state is donated and fed back, as a stepping loop would: without donation
  # every call copies the whole state (the road-edge index is ~13 MB per scenario).
  return {
      'step': (jax.jit(jax.vmap(step), donate_argnums=0), 1),
      'step_with_reward': (jax.jit(jax.vmap(step_with_reward), donate_argnums=0), 1),
      'rollout_with_reward': (jax.jit(jax.vmap(rollout_with_reward), donate_argnums=0),
                              ROLLOUT_STEPS),
      'reset_rollout_with_reward': (jax.jit(jax.vmap(reset_rollout_with_reward),
                                            donate_argnums=0), ROLLOUT_STEPS),
  }


def _next_state(out):
  """The state inside a case's output (fed back into the next call)."""
  if isinstance(out, tuple):
    return out[0]
  return getattr(out, 'final_state', out)


def time_case(fn, state, action, steps_per_call: int, min_seconds: float,
              repeats: int) -> tuple[float, float]:
  """Returns (best seconds per call, compile seconds)."""
  t0 = time.perf_counter()
  state = _next_state(jax.block_until_ready(fn(state, action)))
  compile_s = time.perf_counter() - t0
  # Enough calls per timed run that dispatch overhead is amortised.
  t0 = time.perf_counter()
  state = _next_state(jax.block_until_ready(fn(state, action)))
  one = max(time.perf_counter() - t0, 1e-6)
  calls = max(1, int(min_seconds / one))
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(calls):
      state = _next_state(fn(state, action))
    jax.block_until_ready(state)
    best = min(best, (time.perf_counter() - t0) / calls)
  return best, compile_s


def run(sizes, batches, cases, min_seconds: float, repeats: int) -> list[dict]:
  env = make_env()
  compiled = build_cases(env)
  results = []
  for num_objects, rg_points in sizes:
    for batch in batches:
      raw = make_batch(num_objects, rg_points, batch)
      initial = jax.jit(jax.vmap(env.reset))(raw)
      action = Action(data=jnp.zeros((batch, num_objects, 2), jnp.float32),
                      valid=jnp.ones((batch, num_objects, 1), bool))
      for case in cases:
        fn, steps = compiled[case]
        # A private copy per case, since the compiled functions consume their input.
        state = jax.tree_util.tree_map(jnp.copy, raw if case in RESET_CASES else initial)
        seconds, compile_s = time_case(fn, state, action, steps, min_seconds, repeats)
        sps = batch * steps / seconds
        row = dict(case=case, objects=num_objects, rg_points=rg_points, batch=batch,
                   scenario_steps_per_s=sps, agent_steps_per_s=sps * num_objects,
                   ms_per_call=seconds * 1e3, compile_s=compile_s)
        results.append(row)
        print(f'{case:<20} {num_objects:>4} {rg_points:>6} {batch:>5} '
              f'{sps:>14,.0f} {sps * num_objects:>16,.0f} {seconds * 1e3:>10.2f} '
              f'{compile_s:>8.1f}', flush=True)
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--objects', type=int, help='object slots (default: 64 and 128)')
  parser.add_argument('--rg-points', type=int,
                      help='roadgraph points (default: 20000 with 64, 30000 with 128)')
  parser.add_argument('--batch', type=int, help='scenarios per batch (default: 1,16,64)')
  parser.add_argument('--cases', default=','.join(CASES), help='comma-separated cases')
  parser.add_argument('--min-seconds', type=float, default=1.0,
                      help='minimum duration of one timed run')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--json', help='write the results to this JSON file')
  args = parser.parse_args()
  if args.objects or args.rg_points:
    objects = args.objects or 64
    sizes = ((objects, args.rg_points or (20000 if objects <= 64 else 30000)),)
  else:
    sizes = SIZES
  batches = (args.batch,) if args.batch else BATCHES
  cases = tuple(c for c in args.cases.split(',') if c)
  unknown = set(cases) - set(CASES + RESET_CASES)
  if unknown:
    parser.error(f'unknown cases {sorted(unknown)}; choose from {CASES + RESET_CASES}')
  print(f'jax {jax.__version__} on {jax.devices()[0].platform} '
        f'({os.cpu_count()} cpus, {platform.processor() or platform.machine()})')
  print(f"{'case':<20} {'obj':>4} {'rg':>6} {'batch':>5} {'scen-steps/s':>14} "
        f"{'agent-steps/s':>16} {'ms/call':>10} {'compile':>8}")
  results = run(sizes, batches, cases, args.min_seconds, args.repeats)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'device': str(jax.devices()[0]), 'jax': jax.__version__,
                 'cpu_count': os.cpu_count(), 'results': results}, f, indent=2)
    print(f'wrote {args.json}')


if __name__ == '__main__':
  main()
