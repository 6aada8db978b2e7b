"""Packages a trained reference as the default one shipped with spacer_jax.

  python -m experiments.ship_reference --source /tmp/reference_cpu \
      --command "python -m experiments.train_reference --config=...:cpu --workdir=..."

Copies the weights and vocabulary of ``--source`` (an export or a ``train_reference``
workdir) into ``spacer_jax/models/assets/default_reference/`` with ``ship.json`` naming
the command, the commit (``git rev-parse HEAD``, ``+dirty`` when the tree has changes)
and the data and vocabulary recipes. ``reference:default`` then loads it without
training. Retrain and reship whenever the vocabulary or reference recipe changes (a
test fails until then).
"""

from absl import app, flags

from spacer_jax.models import default
from spacer_jax.training.console import (
    parse_flags,
    quiet_third_party_logging,
    report_user_errors,
)
from spacer_jax.training.provenance import git_commit

_SOURCE = flags.DEFINE_string('source', None, 'Trained reference (export or workdir).',
                              required=True)
_COMMAND = flags.DEFINE_string('command', None, 'The command that trained it.',
                               required=True)
_OUT = flags.DEFINE_string('out', default.SHIPPED_DIR, 'Package directory.')
_COMMIT = flags.DEFINE_string('commit', '', 'Commit the reference was trained at (default: '
                              'this checkout\'s HEAD, +dirty with uncommitted changes).')


def main(argv):
  del argv
  quiet_third_party_logging()
  path = default.ship_reference(_SOURCE.value, _COMMAND.value, _COMMIT.value or git_commit(),
                                _OUT.value)
  print(f'shipped {_SOURCE.value} -> {path}: {default.shipped_reference_info(_OUT.value)}')


if __name__ == '__main__':
  app.run(report_user_errors(main), flags_parser=parse_flags)
