"""Writes one split of the synthetic dataset as WOMD tf.Example TFRecord shards.

  python -m experiments.make_dataset --out /data/synthetic --num_scenarios 1000 \
      [--split train] [--seed 0] [--num_objects 64] [--num_roadgraph_points 20000] \
      [--num_workers 2] [--shard_size 64]

Resumes where a killed run stopped (same flags; other flags are refused). Prints a
summary of every split in ``--out``. Read the result with
``spacer_jax.data.womd.make_dataset('OUT/train/*', max_num_objects=64)``.
"""

from absl import app, flags

from spacer_jax.apps import make_dataset
from spacer_jax.data import writer
from spacer_jax.training import runs
from spacer_jax.training.console import (
    parse_flags,
    quiet_third_party_logging,
    report_user_errors,
)

_OUT = flags.DEFINE_string('out', None, 'Dataset root directory.', required=True)
_NUM = flags.DEFINE_integer('num_scenarios', None, 'Scenarios in the split.', required=True)
_SPLIT = flags.DEFINE_enum('split', 'train', writer.SPLITS, 'Split to write.')
_SEED = flags.DEFINE_integer('seed', 0, 'Dataset seed (scenario seeds derive from it).')
_OBJECTS = flags.DEFINE_integer('num_objects', 64, 'Object slots per scenario (<= 128).')
_POINTS = flags.DEFINE_integer('num_roadgraph_points', 20000, 'Roadgraph slots.')
_WORKERS = flags.DEFINE_integer('num_workers', 1, 'Generator processes.')
_SHARD = flags.DEFINE_integer('shard_size', 64, 'Scenarios per TFRecord shard.')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar.')


def main(argv):
  del argv
  quiet_third_party_logging()
  # Bad flags, then an unusable --out, are refused before anything is written.
  config = writer.WriterConfig(
      out_dir=_OUT.value, num_scenarios=_NUM.value, split=_SPLIT.value,
      seed=_SEED.value, num_objects=_OBJECTS.value, num_roadgraph_points=_POINTS.value,
      shard_size=_SHARD.value, num_workers=_WORKERS.value)
  runs.check_workdir(_OUT.value, '--out')
  make_dataset.run(config, progress=_PROGRESS.value)


if __name__ == '__main__':
  # A refused resume or a busy folder is the user's to resolve, like a bad flag.
  app.run(report_user_errors(main, also=(writer.WriteRefused,)), flags_parser=parse_flags)
