"""Training curves of one or more train_spacer runs in one PNG.

  python -m experiments.plot_curves --runs spacer:/tmp/spacer,ppo:/tmp/ppo \
      --out docs/training_curves.png

Goal / collision / off-road rates (training episodes and held-out evaluation), the KL
to the anchor and the policy's entropy next to its anchor's, against agent-steps
(``spacer_jax.viz.curves``). ``train_spacer`` also writes ``curves.png`` into its workdir.
"""

from absl import app, flags

from spacer_jax.training.console import (
    parse_flags,
    quiet_third_party_logging,
    report_user_errors,
)
from spacer_jax.viz import curves

_RUNS = flags.DEFINE_list('runs', None, 'LABEL:WORKDIR pairs (or bare workdirs).',
                          required=True)
_OUT = flags.DEFINE_string('out', None, 'PNG to write.', required=True)


def parse_runs(specs: list[str]) -> dict[str, str]:
  """``['spacer:/a', '/b']`` -> ``{'spacer': '/a', 'b': '/b'}``."""
  runs = {}
  for spec in specs:
    label, sep, path = spec.partition(':')
    if not sep:
      label, path = spec.rstrip('/').rsplit('/', 1)[-1], spec
    runs[label] = path
  return runs


def main(argv):
  del argv
  quiet_third_party_logging()
  print(f'wrote {curves.plot_training_curves(parse_runs(_RUNS.value), _OUT.value)}')


if __name__ == '__main__':
  app.run(report_user_errors(main), flags_parser=parse_flags)
