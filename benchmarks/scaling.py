"""Weak scaling of the data-parallel SPACER train step: agent-steps/s per device.

  python benchmarks/scaling.py [--devices 1,2,4,8] [--worlds_per_device 2] \
      [--variant ppo|spacer] [--platform cpu|gpu|tpu] [--json out.json]

Each device holds the same number of worlds (weak scaling), so with perfect scaling the
agent-steps/s per device stay constant as devices are added. Every device count runs
in its own subprocess: on ``--platform cpu`` (default) the devices are simulated with
``--xla_force_host_platform_device_count`` and SHARE the machine's cores, so per-device
throughput there falls with the count by construction (the figure shows the sharding
overhead, not a speed-up); on GPU / TPU the first N real devices are used.

Per device count it compiles ``train_step`` x ``--steps_per_iteration`` in one
``lax.scan`` (as the trainer does), jitted with the pool sharded over a ``'data'``
mesh and the state replicated, and reports the best of ``--repeats`` timed calls after
a warm-up: agent-steps/s (agents that acted) in total and per device, and the time per
train step, and the collectives in the compiled program (all-gathers would mean work
pulled across devices; a data-parallel step needs only the gradient all-reduce).
Output: a table and, with ``--json``, the rows plus the backend.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def count_collectives(hlo_text: str) -> dict[str, int]:
  """Cross-device ops in a compiled program's HLO text, by kind (each op once, however
  often a loop runs it)."""
  import re
  kinds = ('all-gather', 'all-reduce', 'all-to-all', 'collective-permute', 'reduce-scatter')
  return {k: len(re.findall(rf'= \S+ {k}(?:-start)?\(', hlo_text)) for k in kinds}


def measure(args: argparse.Namespace, num_devices: int) -> dict:
  """Runs in the worker process: one device count, returns the row."""
  import time

  import jax

  from experiments.configs import spacer as spacer_configs
  from spacer_jax import parallel
  from spacer_jax.apps import train_spacer
  from spacer_jax.spacer import factory
  from spacer_jax.spacer import train as train_lib
  from spacer_jax.spacer.losses import LossConfig

  config = spacer_configs.get_config('tiny')
  config.data.num_objects = args.objects
  config.data.num_roadgraph_points = args.roadgraph_points
  config.env.policy_steps = args.policy_steps
  config.reference.checkpoint = 'random'
  vocab, vocab_path = factory.load_vocab(config)
  selfplay = factory.make_selfplay(config, vocab)
  mesh = parallel.make_mesh(num_devices)
  worlds = args.worlds_per_device * num_devices
  source = train_spacer.ScenarioSource(config)
  pool = jax.jit(selfplay.prepare, out_shardings=parallel.batch_sharding(mesh))(
      parallel.shard_batch(lambda rows: source.scenarios(rows), worlds, mesh))
  example = parallel.first_local_rows(pool)
  anchor, anchor_params, kl = train_lib.Anchor('none'), None, 0.0
  if args.variant == 'spacer':
    reference = train_spacer.load_or_init_reference(config, selfplay, example, vocab_path)
    anchor = train_lib.Anchor('reference', reference.config, 0.001)
    anchor_params, kl = parallel.replicate(reference.params, mesh), 0.1
  ppo = train_lib.PPOConfig(num_worlds=worlds, epochs=args.epochs,
                            num_minibatches=args.minibatches)
  optimizer = train_lib.make_optimizer(ppo)
  state = parallel.replicate(train_lib.init_train_state(selfplay, optimizer, example,
                                                        jax.random.PRNGKey(0)), mesh)
  step = train_lib.make_train_step(selfplay, anchor, LossConfig(kl_coef=kl), ppo,
                                   optimizer, mesh)
  replicated = parallel.replicated(mesh)
  iteration = jax.jit(train_lib.make_train_iteration(step, args.steps_per_iteration),
                      in_shardings=(replicated, parallel.batch_sharding(mesh), replicated),
                      out_shardings=(replicated, replicated), donate_argnums=0)
  start = time.perf_counter()
  iteration = iteration.lower(state, pool, anchor_params).compile()
  collectives = count_collectives(iteration.as_text())
  state, metrics = jax.block_until_ready(iteration(state, pool, anchor_params))
  compile_s = time.perf_counter() - start
  best, acted = float('inf'), 0.0
  for _ in range(args.repeats):
    start = time.perf_counter()
    state, metrics = jax.block_until_ready(iteration(state, pool, anchor_params))
    seconds = time.perf_counter() - start
    if seconds < best:
      best, acted = seconds, float(parallel.to_host(metrics)['agent_steps'])
  total = acted / best
  return {'devices': num_devices, 'worlds': worlds, 'backend': jax.default_backend(),
          'device_kind': jax.devices()[0].device_kind, 'agent_steps': acted,
          'seconds_per_train_step': best / args.steps_per_iteration,
          'agent_steps_per_s': total, 'agent_steps_per_s_per_device': total / num_devices,
          'first_call_s': compile_s, 'collectives': collectives}


def run_worker(args: argparse.Namespace, num_devices: int) -> dict:
  """One device count in a fresh process (the simulated count is fixed at start)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
             PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]))
  if args.platform == 'cpu':
    env['JAX_PLATFORMS'] = 'cpu'
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '')
                        + f' --xla_force_host_platform_device_count={num_devices}').strip()
  else:
    env['JAX_PLATFORMS'] = args.platform
  argv = [sys.executable, os.path.abspath(__file__), f'--worker={num_devices}']
  argv += [f'--{k}={v}' for k, v in vars(args).items()
           if k not in ('json', 'worker', 'devices')]
  out = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
  if out.returncode:
    raise RuntimeError(f'{num_devices}-device worker failed:\n{out.stderr[-3000:]}')
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--devices', default='1,2,4,8', help='comma-separated device counts')
  parser.add_argument('--worlds_per_device', type=int, default=2)
  parser.add_argument('--variant', default='ppo', choices=('ppo', 'spacer'),
                      help='spacer adds the (random, tiny) reference pass and KL')
  parser.add_argument('--platform', default='cpu', help='cpu (simulated devices) | gpu | tpu')
  parser.add_argument('--objects', type=int, default=16)
  parser.add_argument('--roadgraph_points', type=int, default=4000)
  parser.add_argument('--policy_steps', type=int, default=10)
  parser.add_argument('--epochs', type=int, default=2)
  parser.add_argument('--minibatches', type=int, default=2)
  parser.add_argument('--steps_per_iteration', type=int, default=2)
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--json', default='')
  parser.add_argument('--worker', type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(measure(args, args.worker)))
    return

  rows = []
  print(f'{"devices":>7} {"worlds":>6} {"s/train step":>12} {"agent-steps/s":>14} '
        f'{"per device":>11} {"first call s":>12} {"all-gathers":>11}')
  for n in [int(d) for d in args.devices.split(',')]:
    row = run_worker(args, n)
    rows.append(row)
    print(f'{n:>7} {row["worlds"]:>6} {row["seconds_per_train_step"]:>12.3f} '
          f'{row["agent_steps_per_s"]:>14,.0f} {row["agent_steps_per_s_per_device"]:>11,.0f} '
          f'{row["first_call_s"]:>12.1f} {row["collectives"]["all-gather"]:>11}', flush=True)
  base = rows[0]['agent_steps_per_s_per_device']
  for row in rows:  # Weak-scaling efficiency: per-device throughput vs the first count.
    row['efficiency'] = row['agent_steps_per_s_per_device'] / base
  if args.json:
    settings = {k: v for k, v in vars(args).items() if k not in ('json', 'worker')}
    with open(args.json, 'w') as f:
      json.dump({'settings': settings, 'rows': rows}, f, indent=2)


if __name__ == '__main__':
  main()
