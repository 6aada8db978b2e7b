"""Subprocess side of tests/test_parallel.py: runs on several simulated mesh sizes.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \
      python tests/parallel_helper.py WORKDIR CONFIG_JSON N [N ...]
  XLA_FLAGS=--xla_force_host_platform_device_count=4 \
      python tests/parallel_helper.py --realism N

The simulated device count must be fixed before JAX starts, hence a separate process.
Training: for each ``N`` it runs ``train_and_evaluate`` on an ``N``-device mesh into
``WORKDIR/mesh<N>``, with the tiny config updated by the flattened overrides of
``CONFIG_JSON`` (e.g. ``{"env.num_worlds": 8}``). ``--realism N``: realism rollouts of
an untrained tiny reference policy on an ``N``-device mesh and on one device; prints a
JSON line with their largest difference and the spread between rollouts.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(workdir: str, overrides: str, *sizes: str) -> None:
  from experiments.configs import spacer as spacer_configs
  from spacer_jax.apps import train_spacer
  settings = json.loads(overrides)
  variant = settings.pop('variant', 'tiny')
  for n in sizes:
    config = spacer_configs.get_config(variant)
    config.update_from_flattened_dict(settings)
    config.mesh.num_devices = int(n)
    train_spacer.train_and_evaluate(config, os.path.join(workdir, f'mesh{n}'))


def realism(num_devices: str) -> None:
  import jax
  import numpy as np

  from experiments.configs import reference as reference_configs
  from spacer_jax import parallel
  from spacer_jax.data.generator import GeneratorConfig, generate_batch
  from spacer_jax.eval import sim_agent_policies as policies
  from spacer_jax.eval.sim_agents import realism_rollouts
  from spacer_jax.models import init_reference
  from spacer_jax.models import train as reference_train
  from spacer_jax.models import trainer as train_reference
  from spacer_jax.tokens import TokenEnvironment
  from spacer_jax.tokens.builder import primitive_vocabulary

  scenes = generate_batch([3, 4], GeneratorConfig(num_objects=16, num_roadgraph_points=4000))
  vocab = primitive_vocabulary(16)
  config = train_reference.model_config(reference_configs.get_config('tiny'), 16)
  params = init_reference(config, jax.random.key(0),
                          reference_train.make_inputs(vocab, scenes, config))
  env = policies.default_env()
  policy = policies.ReferencePolicy(config, vocab, TokenEnvironment(env, vocab), top_k=8,
                                    max_steps=4)
  run = lambda mesh: jax.tree_util.tree_map(np.asarray, realism_rollouts(
      policy, params, scenes, jax.random.key(1), 8, env=env, vocab=vocab, num_steps=4,
      jit_options={'xla_backend_optimization_level': 0}, mesh=mesh))
  single, sharded = run(None), run(parallel.make_mesh(int(num_devices)))
  valid = single.valid[..., :8]
  xy = lambda r: np.stack([r.x, r.y], -1)[..., :8, :][valid]
  print(json.dumps({
      'shape': list(single.x.shape),
      'max_difference': float(np.max(np.abs(xy(sharded) - xy(single)))),
      'valid_equal': bool(np.array_equal(sharded.valid, single.valid)),
      'spread_between_rollouts': float(np.max(np.std(
          np.where(valid, single.x[..., :8], 0.0), axis=0)))}))


if __name__ == '__main__':
  if sys.argv[1] == '--realism':
    realism(sys.argv[2])
  else:
    main(*sys.argv[1:])
