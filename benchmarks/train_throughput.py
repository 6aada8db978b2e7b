"""Throughput of the compiled SPACER train step and where its time goes.

  python benchmarks/train_throughput.py [--worlds 16] [--objects 64] [--steps 40] \
      [--reference_size nano] [--repeats 3] [--json out.json] [--profile_dir DIR]

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

import jax
from timing_utils import best_time

from experiments.configs import spacer as spacer_configs
from spacer_jax.apps import train_spacer
from spacer_jax.data.generator import GeneratorConfig, generate_batch
from spacer_jax.spacer import factory
from spacer_jax.spacer import train as train_lib
from spacer_jax.spacer.losses import LossConfig


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
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--json', default='')
  parser.add_argument('--profile_dir', default='')
  args = parser.parse_args()

  config = spacer_configs.get_config('')
  config.data.num_objects = args.objects
  config.data.num_roadgraph_points = args.roadgraph_points
  config.env.policy_steps = args.steps
  config.tokens.num_tokens = args.num_tokens
  config.reference.size = args.reference_size
  config.reference.checkpoint = 'random'
  vocab, vocab_path = factory.load_vocab(config)
  selfplay = factory.make_selfplay(config, vocab)
  gen = GeneratorConfig(num_objects=args.objects, num_roadgraph_points=args.roadgraph_points)
  pool = jax.jit(selfplay.prepare)(generate_batch(range(args.worlds), gen))
  reference = train_spacer.load_or_init_reference(config, selfplay, pool, vocab_path)
  anchor = train_lib.Anchor('reference', reference.config, 0.001)
  ppo = train_lib.PPOConfig(num_worlds=args.worlds, epochs=args.epochs,
                            num_minibatches=args.minibatches)
  opt = train_lib.make_optimizer(ppo)
  state = train_lib.init_train_state(selfplay, opt, pool, jax.random.PRNGKey(0))
  rng = jax.random.PRNGKey(1)

  simulate = jax.jit(train_lib.make_episode_fn(selfplay))
  rollout = lambda params, worlds, key: simulate(params, None, worlds, key)[0]
  simulate_and_score = jax.jit(train_lib.make_episode_fn(selfplay, anchor))
  rollout_and_reference = lambda params, worlds, ref_params, key: simulate_and_score(
      params, ref_params, worlds, key)[1]

  steps = {
      'ppo': jax.jit(train_lib.make_train_step(selfplay, train_lib.Anchor('none'),
                                               LossConfig(kl_coef=0.0), ppo, opt)),
      'spacer': jax.jit(train_lib.make_train_step(selfplay, anchor, LossConfig(), ppo,
                                                  opt)),
  }
  timings = {
      'simulation': best_time(rollout, state.params, pool, rng, repeats=args.repeats),
      '+reference': best_time(rollout_and_reference, state.params, pool,
                              reference.params, rng, repeats=args.repeats),
      'train_step (ppo)': best_time(steps['ppo'], state, pool, None,
                                    repeats=args.repeats),
      'train_step (spacer)': best_time(steps['spacer'], state, pool, reference.params,
                                       repeats=args.repeats),
  }
  if args.profile_dir:
    with jax.profiler.trace(args.profile_dir):
      jax.block_until_ready(steps['spacer'](state, pool, reference.params))

  _, metrics = steps['spacer'](state, pool, reference.params)
  acted = float(metrics['agent_steps'])
  slots = args.worlds * args.objects * args.steps
  spacer_s = timings['train_step (spacer)']
  result = {
      'device': str(jax.devices()[0]),
      'worlds': args.worlds, 'objects': args.objects, 'policy_steps': args.steps,
      'roadgraph_points': args.roadgraph_points, 'num_tokens': args.num_tokens,
      'reference_size': args.reference_size,
      'reference_params': int(sum(x.size for x in jax.tree.leaves(reference.params))),
      'acting_agent_steps_per_step': acted, 'agent_slot_steps_per_step': slots,
      'seconds': timings,
      'agent_steps_per_s': {k: acted / v for k, v in timings.items()},
      'share_of_spacer_step': {
          'simulation': timings['simulation'] / spacer_s,
          'reference': (timings['+reference'] - timings['simulation']) / spacer_s,
          'update': (spacer_s - timings['+reference']) / spacer_s,
      },
  }
  print(f"{'program':<22}{'seconds':>10}{'agent-steps/s':>16}")
  for k, v in timings.items():
    print(f'{k:<22}{v:>10.3f}{acted / v:>16,.0f}')
  print('share of the SPACER step: ' + ', '.join(
      f'{k} {v:.0%}' for k, v in result['share_of_spacer_step'].items()))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
