"""SPACER / PPO / HR-PPO self-play training.

  python -m experiments.train_spacer --config=experiments/configs/spacer.py \
      --workdir=/tmp/spacer [--reference_checkpoint=DIR] [--config.ppo.lr=1e-4]
  python -m experiments.train_spacer --config=experiments/configs/spacer.py:ppo ...
  python -m experiments.train_spacer --config=experiments/configs/spacer.py:hr_ppo ...

Resumes from the newest checkpoint in the workdir. Writes TensorBoard events (tb/),
metrics.jsonl, checkpoints/, videos/ and final_metrics.json there.
"""

from absl import app, flags
from ml_collections import config_flags

from spacer_jax.apps import train_spacer

_CONFIG = config_flags.DEFINE_config_file(
    'config', 'experiments/configs/spacer.py', 'Training configuration.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.', required=True)
_REFERENCE = flags.DEFINE_string(
    'reference_checkpoint', None,
    'Reference model artifact or train_reference workdir (default: the default '
    'reference, trained first when missing; "random" for an untrained one).')


def main(argv):
  del argv
  config = _CONFIG.value
  if _REFERENCE.value is not None:
    with config.unlocked():
      config.reference.checkpoint = _REFERENCE.value
  train_spacer.train_and_evaluate(config, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
