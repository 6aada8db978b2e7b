"""Reference-model throughput: teacher-forced pass cost and autoregressive rollout speed.

  python benchmarks/reference_throughput.py [--sizes nano,mini,base] [--batches 16,64]
      [--quick] [--json out.json]

For each size and batch (64 agents per scenario, 45 token positions, 256 map segments):
``teacher_forced``: one jitted ``reference_log_probs`` pass (ms per batch, scenarios/s,
agent-tokens/s); ``rollout``: a jitted closed-loop ``reference_rollout`` of 40 token
steps (8 s) with overlap / off-road metrics (scenarios/s, agent-steps/s at 10 Hz).
``--rollout_steps 0`` (or ``run(..., rollout_steps=0)``, as ``benchmarks/gpu_check.py``
calls it) times the teacher-forced pass only. Times are the best of ``--repeats`` runs
after a compile run. ``--quick`` uses 8 rollout steps, batch 16 only, 20000 -> 4000 map
points, and the sizes nano and mini.
"""

from __future__ import annotations

import argparse
import functools
import json

import jax
from timing_utils import best_time

from spacer_jax.data.generator import GeneratorConfig, generate_batch
from spacer_jax.models import reference_config, reference_log_probs
from spacer_jax.models import train as train_lib
from spacer_jax.models.rollout import reference_rollout
from spacer_jax.sim.builders import stack_states
from spacer_jax.sim.config import EnvConfig
from spacer_jax.sim.dynamics import get_dynamics_model
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.tokens import TokenEnvironment
from spacer_jax.tokens.builder import primitive_vocabulary


def run(sizes: list[str], batches: list[int], num_objects: int, rg_points: int,
        rollout_steps: int, repeats: int, num_tokens: int = 200) -> list[dict]:
  # Speed does not depend on the tokens' content: primitives need no cache or data.
  vocab = primitive_vocabulary(num_tokens)
  env = TokenEnvironment(MultiAgentEnvironment(
      get_dynamics_model('delta_global'), EnvConfig(metrics=('overlap', 'offroad'),
                                                    rewards={})), vocab)
  gen = GeneratorConfig(num_objects=num_objects, num_roadgraph_points=rg_points)
  base = generate_batch(range(4), gen)
  rows = []
  for batch in batches:
    # Distinct scenes are not needed for timing: tile 4 generated ones.
    scen = stack_states([jax.tree.map(lambda a, i=i: a[i % 4], base) for i in range(batch)])
    for size in sizes:
      config = reference_config(size, num_tokens=num_tokens)
      inputs = jax.jit(train_lib.make_inputs, static_argnums=2)(vocab, scen, config)
      params = train_lib.init_train_state(config, train_lib.make_optimizer(1e-3, 10),
                                          jax.tree.map(lambda a: a[:1], inputs),
                                          jax.random.key(0)).params
      tf = jax.jit(functools.partial(reference_log_probs, config))
      t_tf = best_time(tf, params, inputs, repeats=repeats)
      positions = inputs.token_ids.shape[-1]
      row = {'size': size, 'batch': batch, 'agents': num_objects, 'rg_points': rg_points,
             'positions': positions, 'teacher_forced_ms': 1e3 * t_tf,
             'teacher_forced_scenarios_per_s': batch / t_tf,
             'teacher_forced_agent_tokens_per_s': batch * num_objects * positions / t_tf}
      line = (f'{size:5s} batch {batch:3d}: teacher-forced {1e3 * t_tf:8.1f} ms '
              f'({row["teacher_forced_agent_tokens_per_s"]:.3g} agent-tokens/s)')
      if rollout_steps:
        roll = functools.partial(reference_rollout, config, vocab=vocab, token_env=env,
                                 num_steps=rollout_steps, top_k=32, temperature=1.0)
        t_ro = best_time(functools.partial(roll, state=scen, rng=jax.random.key(1)),
                         params, repeats=repeats)
        row.update(rollout_steps=rollout_steps, rollout_s=t_ro,
                   rollout_scenarios_per_s=batch / t_ro,
                   rollout_agent_steps_per_s=batch * num_objects * rollout_steps * 2 / t_ro)
        line += (f' | rollout of {rollout_steps} tokens {t_ro:7.2f} s '
                 f'({row["rollout_scenarios_per_s"]:.3g} scenarios/s, '
                 f'{row["rollout_agent_steps_per_s"]:.3g} agent-steps/s)')
      print(line, flush=True)
      rows.append(row)
  return rows


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--sizes', default=None, help='comma-separated (default nano,mini,base)')
  p.add_argument('--batches', default=None, help='comma-separated (default 16,64)')
  p.add_argument('--agents', type=int, default=64)
  p.add_argument('--rg_points', type=int, default=None)
  p.add_argument('--rollout_steps', type=int, default=None)
  p.add_argument('--repeats', type=int, default=2)
  p.add_argument('--quick', action='store_true')
  p.add_argument('--json', default='')
  a = p.parse_args()
  sizes = (a.sizes or ('nano,mini' if a.quick else 'nano,mini,base')).split(',')
  batches = [int(b) for b in (a.batches or ('16' if a.quick else '16,64')).split(',')]
  rg = a.rg_points or (4000 if a.quick else 20000)
  steps = a.rollout_steps if a.rollout_steps is not None else (8 if a.quick else 40)
  rows = run(sizes, batches, a.agents, rg, steps, 1 if a.quick else a.repeats)
  out = {'device': str(jax.devices()[0]), 'jax': jax.__version__, 'rows': rows}
  if a.json:
    with open(a.json, 'w') as f:
      json.dump(out, f, indent=2)
  return out


if __name__ == '__main__':
  main()
