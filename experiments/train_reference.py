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

from spacer_jax.apps import train_reference
from spacer_jax.training.console import quiet_third_party_logging, report_user_errors

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'experiments/configs/reference.py', 'Training configuration.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.', required=True)


def main(argv):
  del argv
  quiet_third_party_logging()
  train_reference.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(report_user_errors(main))
