"""Packages a finished train_spacer run as a pretrained sim agent shipped with spacer_jax.

  python -m experiments.ship_policy --kind spacer --source /tmp/runs/spacer_cpu \
      --command "python -m experiments.train_spacer --config=...:cpu --workdir=..."

Copies the run's config, policy parameters (newest checkpoint, no optimizer state) and
vocabulary into ``spacer_jax/spacer/assets/pretrained/<kind>/`` with ``ship.json``
naming the command, the commit and the recipes (``spacer_jax.spacer.pretrained``).
``load_policy('<kind>:default')`` and ``experiments.evaluate --checkpoints=<kind>:default``
then load it without training.
"""

from absl import app, flags

from spacer_jax.spacer import pretrained
from spacer_jax.training.console import (
    parse_flags,
    quiet_third_party_logging,
    report_user_errors,
)
from spacer_jax.training.provenance import git_commit

_KIND = flags.DEFINE_enum('kind', None, list(pretrained.KINDS), 'Which policy it is.',
                          required=True)
_SOURCE = flags.DEFINE_string('source', None, 'A finished train_spacer workdir.',
                              required=True)
_COMMAND = flags.DEFINE_string('command', None, 'The command that trained it.',
                               required=True)
_ROOT = flags.DEFINE_string('root', pretrained.PRETRAINED_DIR, 'Package directory.')
_COMMIT = flags.DEFINE_string('commit', '', 'Commit the run was trained at (default: this '
                              'checkout\'s HEAD, +dirty with uncommitted changes).')


def main(argv):
  del argv
  quiet_third_party_logging()
  path = pretrained.ship_policy(_KIND.value, _SOURCE.value, _COMMAND.value,
                                _COMMIT.value or git_commit(), _ROOT.value)
  print(f'shipped {_SOURCE.value} -> {path}: '
        f'{pretrained.pretrained_info(_KIND.value, _ROOT.value)}')


if __name__ == '__main__':
  app.run(report_user_errors(main), flags_parser=parse_flags)
