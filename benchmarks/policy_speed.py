"""Sim-agent policy speed and size: closed-loop scenarios/s and parameters per policy.

  python benchmarks/policy_speed.py [--batch 8] [--objects 64] [--rg_points 20000]
      [--steps 40] [--sizes nano,mini,base] [--policies ...] [--repeats 2] [--quick]
      [--output out.json]

Every policy drives the same batch of generated scenes (``--batch`` scenes of
``--objects`` slots) through :func:`spacer_jax.eval.sim_agents.closed_loop_rollout` for
``--steps`` decision steps of 0.2 s (40 = WOSAC's 8 s), with the environment's overlap and
off-road metrics at 10 Hz, on the default device. Policies: log replay, constant
velocity, IDM, the reference model at each ``--sizes`` (untrained: speed does not depend
on the weights), a SPACER policy at the default sizes of
``experiments/configs/spacer.py`` (K = 200, untrained) and any ``load_policy`` spec
(``spacer:default``: the shipped policy with its own observation sizes, top-5). Times
are the best of ``--repeats`` runs after a compile run; the scenes are reset (road-edge index built)
once beforehand and that cost is reported apart (``reset_s``), as 32 WOSAC rollouts of a
scenario share it. The summary gives SPACER's speed-up over each reference size and their
parameter ratio (the paper: 9.4x the reference's scenarios/s, 65k vs 3.2M parameters).
``--quick``: 4 scenes, 4000 map points, the sizes nano and base, one timed run.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
from timing_utils import best_time

from experiments.configs import spacer as spacer_configs
from spacer_jax.data.generator import GeneratorConfig, generate_batch
from spacer_jax.eval import sim_agent_policies as policies
from spacer_jax.eval.sim_agents import closed_loop_fn
from spacer_jax.models import init_reference, reference_config
from spacer_jax.models import train as reference_train
from spacer_jax.sim.builders import stack_states
from spacer_jax.sim.config import EnvConfig
from spacer_jax.sim.dynamics import get_dynamics_model
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.spacer.factory import make_selfplay
from spacer_jax.tokens import TokenEnvironment
from spacer_jax.tokens.builder import primitive_vocabulary

SCRIPTED = ('log_replay', 'constant_velocity', 'idm')


def build_policies(names: list[str], sizes: list[str], env: MultiAgentEnvironment, vocab,
                   scenes) -> list[tuple[str, policies.SimAgentPolicy, object]]:
  """``(label, policy, params)`` for every requested policy (untrained parameters)."""
  out = []
  for name in names:
    if name in SCRIPTED:
      policy, params = policies.load_policy(name, env=env, vocab=vocab)
      out.append((name, policy, params))
    elif name == 'reference':
      one = jax.tree.map(lambda a: a[:1], scenes)
      for size in sizes:
        config = reference_config(size, num_tokens=vocab.num_tokens)
        inputs = jax.jit(reference_train.make_inputs, static_argnums=2)(vocab, one, config)
        params = init_reference(config, jax.random.key(0), inputs)
        policy = policies.ReferencePolicy(config, vocab, TokenEnvironment(env, vocab),
                                          top_k=32, temperature=1.0)
        out.append((f'reference_{size}', policy, params))
    elif name == 'spacer':
      config = spacer_configs.get_config('spacer')
      selfplay = make_selfplay(config, vocab)
      params = jax.jit(selfplay.policy.init)(
          jax.random.key(0), policies.example_observation(selfplay.obs_config))
      out.append(('spacer', policies.LearnedPolicy(selfplay, variant='spacer'), params))
    elif ':' in name:
      # A trained policy as evaluation loads it (e.g. spacer:default, the shipped one
      # with its own observation sizes), decoded top-5 as in the realism tables.
      policy, params = policies.load_policy(name, env=env, vocab=vocab, learned_top_k=5)
      out.append((name, policy, params))
    else:
      raise ValueError(f'unknown policy {name!r}; expected {SCRIPTED}, reference, spacer '
                       'or a load_policy spec such as spacer:default.')
  return out


def run(names: list[str], sizes: list[str], batch: int, num_objects: int, rg_points: int,
        steps: int, repeats: int, num_tokens: int = 200) -> dict:
  vocab = primitive_vocabulary(num_tokens)  # speed does not depend on the tokens' content
  env = MultiAgentEnvironment(get_dynamics_model('delta_global'),
                              EnvConfig(metrics=('overlap', 'offroad'), rewards={}))
  gen = GeneratorConfig(num_objects=num_objects, num_roadgraph_points=rg_points)
  distinct = min(batch, 4)
  base = generate_batch(range(distinct), gen)
  # Distinct scenes are not needed for timing: tile up to 4 generated ones.
  scenes = stack_states([jax.tree.map(lambda a, i=i: a[i % distinct], base)
                         for i in range(batch)])
  # The road-edge index is built once per scenario (the runner keeps it), as in a
  # WOSAC evaluation where 32 rollouts share a scenario: timings are the policies'.
  reset = jax.jit(env.reset)
  reset_s = best_time(reset, scenes, repeats=repeats)
  scenes = reset(scenes)
  print(f'env.reset with the road-edge index: {reset_s:.3f} s per batch (not in the rows)')
  rows = []
  for label, policy, params in build_policies(names, sizes, env, vocab, scenes):
    fn = closed_loop_fn(policy, env=env, vocab=vocab, num_steps=steps)
    start = time.perf_counter()
    jax.block_until_ready(fn(params, scenes, jax.random.key(1)))
    compile_s = time.perf_counter() - start
    seconds = best_time(fn, params, scenes, jax.random.key(1), repeats=repeats)
    row = {'policy': label, 'params': policy.num_params(params), 'batch': batch,
           'objects': num_objects, 'rg_points': rg_points, 'decision_steps': steps,
           'seconds': seconds, 'first_call_s': compile_s,
           'scenarios_per_s': batch / seconds,
           'agent_steps_per_s': batch * num_objects * steps * vocab.steps_per_token / seconds}
    print(f'{label:18s} {row["params"]:>10,d} params | {seconds:8.3f} s per batch | '
          f'{row["scenarios_per_s"]:9.3f} scenarios/s | first call {compile_s:6.1f} s',
          flush=True)
    rows.append(row)
  by = {r['policy']: r for r in rows}
  ratios = {}
  for learned in [k for k in by if k == 'spacer' or k.startswith('spacer:')]:
    for label, r in by.items():
      if label.startswith('reference_'):
        size = label[len('reference_'):]
        key = size if learned == 'spacer' else f'{learned} vs {size}'
        ratios[key] = {
            'spacer_speedup': by[learned]['scenarios_per_s'] / r['scenarios_per_s'],
            'reference_over_spacer_params': r['params'] / by[learned]['params']}
        print(f'{learned} vs reference {size}: {ratios[key]["spacer_speedup"]:.2f}x the '
              f'scenarios/s, {ratios[key]["reference_over_spacer_params"]:.1f}x fewer '
              'parameters')
  return {'device': str(jax.devices()[0]), 'backend': jax.default_backend(), 'rows': rows,
          'reset_s': reset_s, 'spacer_vs_reference': ratios}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--policies', default='log_replay,constant_velocity,idm,reference,spacer')
  p.add_argument('--sizes', default=None, help='reference sizes (default nano,mini,base)')
  p.add_argument('--batch', type=int, default=None, help='scenes (default 8)')
  p.add_argument('--objects', type=int, default=64)
  p.add_argument('--rg_points', type=int, default=None, help='map points (default 20000)')
  p.add_argument('--steps', type=int, default=40, help='decision steps')
  p.add_argument('--num_tokens', type=int, default=200)
  p.add_argument('--repeats', type=int, default=None, help='timed runs (default 2)')
  p.add_argument('--quick', action='store_true')
  p.add_argument('--output', default='', help='write the results as JSON here')
  a = p.parse_args()
  pick = lambda value, full, quick: value if value is not None else (quick if a.quick
                                                                     else full)
  sizes = pick(a.sizes, 'nano,mini,base', 'nano,base').split(',')
  result = run(a.policies.split(','), sizes, pick(a.batch, 8, 4), a.objects,
               pick(a.rg_points, 20000, 4000), a.steps,
               pick(a.repeats, 2, 1), a.num_tokens)
  if a.output:
    with open(a.output, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
