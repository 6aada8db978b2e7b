"""Simulator demo: sim agents in closed loop on generated scenarios, rendered to video.

  python -m experiments.sim_demo --config=experiments/configs/sim_demo.py \
      --workdir=/tmp/spacer_demo [--config.sim_agent=constant_velocity]

Writes ``summary.json``, one PNG and one MP4 per rendered scenario into the workdir
and prints per-agent collision / off-road rates and the speed of the rollout.
"""

from absl import app, flags
from ml_collections import config_flags

from experiments.configs import sim_demo as sim_demo_config
from spacer_jax.apps import sim_demo
from spacer_jax.training import runs
from spacer_jax.training.config_checks import check_command_line, validate
from spacer_jax.training.console import (
    parse_flags,
    quiet_third_party_logging,
    report_user_errors,
)

_DEFAULT_CONFIG = 'experiments/configs/sim_demo.py'
if __name__ == '__main__':
  # Unknown --config.* keys get one line and a did-you-mean. Here, not next to app.run:
  # without --config, DEFINE_config_file parses the default and its overrides at once.
  check_command_line(_DEFAULT_CONFIG)
_CONFIG = config_flags.DEFINE_config_file(
    'config', _DEFAULT_CONFIG, 'Demo configuration.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory.', required=True)


def main(argv):
  del argv
  quiet_third_party_logging()
  # Bad values and an unusable workdir are refused before any JAX work or file.
  validate(_CONFIG.value, sim_demo_config.RULES)
  runs.check_workdir(_WORKDIR.value)
  sim_demo.run_demo(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(report_user_errors(main), flags_parser=parse_flags)
