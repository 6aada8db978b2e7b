"""Throughput of the compiled SPACER train step and where its time goes.

  python benchmarks/train_throughput.py [--worlds 16] [--objects 64] [--steps 40] \
      [--reference_size nano] [--repeats 3] [--json out.json] [--profile_dir DIR]

``make_config`` and ``measure`` are also called by ``benchmarks/gpu_check.py``.

Times, for one set of sizes, separately compiled programs that grow stage by stage:

* ``simulation``: the self-play rollout alone (observation, policy, token env, metrics);
* ``+reference``: rollout plus the reference model's teacher-forced pass over it;
* ``train_step (ppo)``: the full step without an anchor (rollout + GAE + PPO epochs);
* ``train_step (spacer)``: the full SPACER step (rollout + reference + PPO with KL).

Shares are differences of these timings (the reference's share = (+reference -
simulation) / spacer step). ``--profile_dir`` also writes a ``jax.profiler`` trace of
the SPACER step, whose named scopes (simulation / reference / update) show the same
split in TensorBoard. The reference is untrained (random weights): its cost does not
depend on its weights. Reported figures are measurements, not assertions.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
from timing_utils import best_time, tile_batch

from experiments.configs import spacer as spacer_configs
from spacer_jax.apps import train_spacer
from spacer_jax.data.generator import GeneratorConfig, generate_batch
from spacer_jax.spacer import factory
from spacer_jax.spacer import train as train_lib
from spacer_jax.spacer.losses import LossConfig
from spacer_jax.spacer.minibatch import resolve_chunk_rows

PROGRAMS = ('simulation', '+reference', 'train_step (ppo)', 'train_step (spacer)')


def make_config(objects: int = 64, roadgraph_points: int = 20000, steps: int = 40,
                reference_size: str = 'nano', num_tokens: int = 200, vocabulary: str = '',
                variant: str = '') -> ml_collections.ConfigDict:
  """The ``train_spacer`` config timed: ``objects`` slots and ``roadgraph_points`` map
  points per world, ``steps`` policy steps (0.2 s each) per episode, a random
  (untrained) reference of ``reference_size`` and the vocabulary file ``vocabulary``
  ('' = the cached default of ``num_tokens`` tokens); ``variant`` is
  ``spacer_configs.get_config``'s argument (e.g. 'tiny' for its small observation)."""
  config = spacer_configs.get_config(variant)
  config.data.num_objects = objects
  config.data.num_roadgraph_points = roadgraph_points
  config.env.policy_steps = steps
  config.tokens.num_tokens = num_tokens
  config.tokens.vocabulary = vocabulary
  config.reference.size = reference_size
  config.reference.checkpoint = 'random'
  return config


def measure(config: ml_collections.ConfigDict, worlds: int, epochs: int = 4,
            minibatches: int = 4, repeats: int = 3, programs: Sequence[str] = PROGRAMS,
            chunk_rows: int = train_lib.PPOConfig.chunk_rows,
            unique_scenes: int | None = None, profile_dir: str = '',
            should_run: Callable[[str], bool] | None = None,
            progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
  """Times ``programs`` (module docstring) on ``worlds`` worlds of ``config``.

  Args:
    config: from :func:`make_config`.
    worlds: worlds per train step (``PPOConfig.num_worlds``).
    epochs, minibatches: PPO passes per step and minibatches per pass.
    chunk_rows: ``PPOConfig.chunk_rows``, valid agent-steps per gradient chunk.
    repeats: timed calls per program (the best counts) after one compile call.
    programs: a subset of ``PROGRAMS``, timed in this order; shares need
      'simulation', '+reference' and 'train_step (spacer)'.
    unique_scenes: generate this many scenes and tile them to ``worlds`` (generation
      is host-side, ~0.1 s per 20000-point scene); None = ``worlds`` distinct scenes.
    profile_dir: also write a ``jax.profiler`` trace of the SPACER step there.
    should_run: called with a program's name before timing it; False skips it (the
      program is then listed under ``skipped_programs``). None = run all.
    progress: called with the result so far after each program is timed.

  Returns:
    The settings; per program ``seconds`` (best call), ``agent_steps_per_s`` (agents
    that acted, counted from the SPACER step's metrics: NaN when it is not timed) and
    ``wall_s`` (compile and every call); ``share_of_spacer_step`` of simulation /
    reference / update when measurable.
  """
  unknown = set(programs) - set(PROGRAMS)
  if unknown:
    raise ValueError(f'unknown programs {sorted(unknown)}; choose from {PROGRAMS}')
  objects, steps = config.data.num_objects, config.env.policy_steps
  vocab, vocab_path = factory.load_vocab(config)
  selfplay = factory.make_selfplay(config, vocab)
  gen = GeneratorConfig(num_objects=objects,
                        num_roadgraph_points=config.data.num_roadgraph_points)
  scenes = generate_batch(range(min(unique_scenes or worlds, worlds)), gen)
  pool = jax.jit(selfplay.prepare)(tile_batch(scenes, worlds))
  reference = train_spacer.load_or_init_reference(config, selfplay, pool, vocab_path)
  anchor = train_lib.Anchor('reference', reference.config, 0.001)
  ppo = train_lib.PPOConfig(num_worlds=worlds, epochs=epochs, num_minibatches=minibatches,
                            chunk_rows=chunk_rows)
  opt = train_lib.make_optimizer(ppo)
  state = train_lib.init_train_state(selfplay, opt, pool, jax.random.PRNGKey(0))
  rng = jax.random.PRNGKey(1)

  simulate = jax.jit(train_lib.make_episode_fn(selfplay))
  simulate_and_score = jax.jit(train_lib.make_episode_fn(selfplay, anchor))
  spacer_step = jax.jit(train_lib.make_train_step(selfplay, anchor, LossConfig(), ppo, opt))
  ppo_step = jax.jit(train_lib.make_train_step(selfplay, train_lib.Anchor('none'),
                                              LossConfig(kl_coef=0.0), ppo, opt))
  calls = {  # name: (function, arguments); jitted functions compile on their first call
      'simulation': (lambda params, worlds_, key: simulate(params, None, worlds_, key)[0],
                     state.params, pool, rng),
      '+reference': (lambda params, worlds_, ref_params, key: simulate_and_score(
          params, ref_params, worlds_, key)[1], state.params, pool, reference.params, rng),
      'train_step (ppo)': (ppo_step, state, pool, None),
      'train_step (spacer)': (spacer_step, state, pool, reference.params),
  }
  timings, wall, skipped = {}, {}, []
  # Agents that acted in one step: the same in every program (same worlds and key).
  acted = float('nan')

  def result() -> dict[str, Any]:
    out = {
        'device': str(jax.devices()[0]),
        'worlds': worlds, 'objects': objects, 'policy_steps': steps,
        'roadgraph_points': config.data.num_roadgraph_points,
        'num_tokens': vocab.num_tokens, 'reference_size': config.reference.size,
        'epochs': epochs, 'minibatches': minibatches,
        'chunk_rows': resolve_chunk_rows(chunk_rows),
        'reference_params': int(sum(x.size for x in jax.tree.leaves(reference.params))),
        'acting_agent_steps_per_step': acted,
        'agent_slot_steps_per_step': worlds * objects * steps,
        'seconds': dict(timings), 'wall_s': dict(wall), 'skipped_programs': list(skipped),
        'agent_steps_per_s': {k: acted / v for k, v in timings.items()},
    }
    if {'simulation', '+reference', 'train_step (spacer)'} <= set(timings):
      spacer_s = timings['train_step (spacer)']
      out['share_of_spacer_step'] = {
          'simulation': timings['simulation'] / spacer_s,
          'reference': (timings['+reference'] - timings['simulation']) / spacer_s,
          'update': (spacer_s - timings['+reference']) / spacer_s,
      }
    return out

  for name in programs:
    if should_run is not None and not should_run(name):
      skipped.append(name)
      continue
    fn, *args = calls[name]
    start = time.perf_counter()
    timings[name] = best_time(fn, *args, repeats=repeats)
    wall[name] = time.perf_counter() - start
    if name == 'train_step (spacer)':
      acted = float(spacer_step(state, pool, reference.params)[1]['agent_steps'])
    if progress is not None:
      progress(result())
  if profile_dir:
    with jax.profiler.trace(profile_dir):
      jax.block_until_ready(spacer_step(state, pool, reference.params))
  return result()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--worlds', type=int, default=16)
  parser.add_argument('--objects', type=int, default=64)
  parser.add_argument('--roadgraph_points', type=int, default=20000)
  parser.add_argument('--steps', type=int, default=40, help='policy steps per episode')
  parser.add_argument('--reference_size', default='nano', help='nano | mini | base')
  parser.add_argument('--num_tokens', type=int, default=200)
  parser.add_argument('--epochs', type=int, default=4)
  parser.add_argument('--minibatches', type=int, default=4)
  parser.add_argument('--chunk_rows', type=int, default=train_lib.PPOConfig.chunk_rows)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--json', default='')
  parser.add_argument('--profile_dir', default='')
  args = parser.parse_args()

  config = make_config(args.objects, args.roadgraph_points, args.steps,
                       args.reference_size, args.num_tokens)
  result = measure(config, args.worlds, args.epochs, args.minibatches, args.repeats,
                   chunk_rows=args.chunk_rows, profile_dir=args.profile_dir)
  acted = result['acting_agent_steps_per_step']
  print(f"{'program':<22}{'seconds':>10}{'agent-steps/s':>16}")
  for k, v in result['seconds'].items():
    print(f'{k:<22}{v:>10.3f}{acted / v:>16,.0f}')
  print('share of the SPACER step: ' + ', '.join(
      f'{k} {v:.0%}' for k, v in result['share_of_spacer_step'].items()))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
