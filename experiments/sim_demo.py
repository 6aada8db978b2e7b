"""Simulator demo: sim agents in closed loop on generated scenarios, rendered to video.

  python -m experiments.sim_demo --config=experiments/configs/sim_demo.py \
      --workdir=/tmp/spacer_demo [--config.sim_agent=constant_velocity]

Writes ``summary.json``, one PNG and one MP4 per rendered scenario into the workdir
and prints per-agent collision / off-road rates and the speed of the rollout.
"""

from absl import app, flags
from ml_collections import config_flags

from spacer_jax.apps import sim_demo
from spacer_jax.training.console import quiet_third_party_logging, report_user_errors

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'experiments/configs/sim_demo.py', 'Demo configuration.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.', required=True)


def main(argv):
  del argv
  quiet_third_party_logging()
  sim_demo.run_demo(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(report_user_errors(main))
