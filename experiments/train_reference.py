"""Reference-model training: teacher forcing, or CAT-K closed-loop fine-tuning.

  python -m experiments.train_reference --config=experiments/configs/reference.py \
      --workdir=/tmp/reference
  python -m experiments.train_reference --config=experiments/configs/reference.py:cpu \
      --workdir=/tmp/reference_cpu                       # the default reference, < 1 h
  python -m experiments.train_reference --config=experiments/configs/reference.py:catk \
      --config.init_checkpoint=/tmp/reference --workdir=/tmp/reference_catk

Resumes from the newest checkpoint in the workdir. Writes TensorBoard events (tb/),
metrics.jsonl, checkpoints/, the exported model (export/, loadable with
``spacer_jax.models.checkpoint.load_reference``) and final_metrics.json there.
"""

from absl import app, flags
from ml_collections import config_flags

from experiments.configs import reference as reference_config
from spacer_jax.models import trainer
from spacer_jax.training import runs
from spacer_jax.training.config_checks import check_command_line, validate
from spacer_jax.training.console import (
    parse_flags,
    quiet_third_party_logging,
    report_user_errors,
)

_DEFAULT_CONFIG = 'experiments/configs/reference.py'
if __name__ == '__main__':
  # Unknown --config.* keys get one line and a did-you-mean. Here, not next to app.run:
  # without --config, DEFINE_config_file parses the default and its overrides at once.
  check_command_line(_DEFAULT_CONFIG)
_CONFIG = config_flags.DEFINE_config_file(
    'config', _DEFAULT_CONFIG, 'Training configuration.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.', required=True)


def main(argv):
  del argv
  quiet_third_party_logging()
  # Bad values and an unusable workdir are refused where they were typed, before any
  # JAX work or file.
  validate(_CONFIG.value, reference_config.RULES)
  runs.check_workdir(_WORKDIR.value)
  trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(report_user_errors(main), flags_parser=parse_flags)
