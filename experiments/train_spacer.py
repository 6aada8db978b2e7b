"""SPACER / PPO / HR-PPO self-play training.

  python -m experiments.train_spacer --config=experiments/configs/spacer.py \
      --workdir=/tmp/spacer [--reference_checkpoint=DIR] [--config.ppo.lr=1e-4]
  python -m experiments.train_spacer --config=experiments/configs/spacer.py:ppo ...
  python -m experiments.train_spacer --config=experiments/configs/spacer.py:hr_ppo ...

Resumes from the newest checkpoint in the workdir. Writes TensorBoard events (tb/),
metrics.jsonl, checkpoints/, videos/ and final_metrics.json there.

Data-parallel over all local devices by default (``--config.mesh.num_devices``).
Multi-host / multi-process: start the same command in every process with
``--distributed`` (or ``SPACER_JAX_DISTRIBUTED=1``); the coordinator, process count and
id come from the flags below, the ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
``JAX_PROCESS_ID`` variables, or SLURM / Cloud TPU auto-detection (see launch/)::

  python -m experiments.train_spacer --workdir=/shared/run --distributed \
      --coordinator_address=host0:1234 --num_processes=2 --process_id=0   # and =1
"""

from absl import app, flags
from ml_collections import config_flags

from experiments.configs import spacer as spacer_config
from spacer_jax.apps import train_spacer
from spacer_jax.parallel import maybe_initialize
from spacer_jax.training import runs
from spacer_jax.training.config_checks import check_command_line, validate
from spacer_jax.training.console import (
    parse_flags,
    quiet_third_party_logging,
    report_user_errors,
)

_DEFAULT_CONFIG = 'experiments/configs/spacer.py'
if __name__ == '__main__':
  # Unknown --config.* keys get one line and a did-you-mean. Here, not next to app.run:
  # without --config, DEFINE_config_file parses the default and its overrides at once.
  check_command_line(_DEFAULT_CONFIG)
_CONFIG = config_flags.DEFINE_config_file(
    'config', _DEFAULT_CONFIG, 'Training configuration.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.', required=True)
_REFERENCE = flags.DEFINE_string(
    'reference_checkpoint', None,
    'Reference model artifact or train_reference workdir (default: the default '
    'reference, trained first when missing; "random" for an untrained one).')

_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Initialise jax.distributed (multi-process run); also enabled '
    'by SPACER_JAX_DISTRIBUTED=1.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', '', 'host:port of process 0 ("" = JAX_COORDINATOR_ADDRESS or '
    'cluster auto-detection).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', 0, 'Processes in the run (0 = JAX_NUM_PROCESSES or auto-detection).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', -1, 'This process (-1 = JAX_PROCESS_ID or auto-detection).')


def main(argv):
  del argv
  quiet_third_party_logging()
  # Bad values and an unusable workdir are refused where they were typed, before any
  # JAX work or file.
  validate(_CONFIG.value, spacer_config.RULES)
  runs.check_workdir(_WORKDIR.value)
  # Before anything touches a JAX backend.
  maybe_initialize(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                   _PROCESS_ID.value)
  config = _CONFIG.value
  if _REFERENCE.value is not None:
    with config.unlocked():
      config.reference.checkpoint = _REFERENCE.value
  train_spacer.train_and_evaluate(config, _WORKDIR.value)


if __name__ == '__main__':
  app.run(report_user_errors(main), flags_parser=parse_flags)
