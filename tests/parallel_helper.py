"""Subprocess side of tests/test_parallel.py: SPACER training on several mesh sizes.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \
      python tests/parallel_helper.py WORKDIR CONFIG_JSON N [N ...]

The simulated device count must be fixed before JAX starts, hence a separate process.
For each ``N`` it runs ``train_and_evaluate`` on an ``N``-device mesh into
``WORKDIR/mesh<N>``, with the tiny config updated by the flattened overrides of
``CONFIG_JSON`` (e.g. ``{"env.num_worlds": 8}``).
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


if __name__ == '__main__':
  main(*sys.argv[1:])
