r"""Evaluates sim-agent policies: WOSAC realism, speed / size, closed-loop planner study.

  python -m experiments.evaluate --workdir=/tmp/eval \
      [--config=experiments/configs/evaluate.py[:cpu|:tiny]] \
      [--checkpoints=spacer:/tmp/spacer,ppo:/tmp/ppo,hr_ppo:/tmp/hr_ppo,reference:/tmp/ref] \
      [--num_scenarios=N]

Baselines (log replay, constant velocity, IDM, the default reference) are always
included (``--config.baselines``). Writes report.md / report.json, plots/ and videos/
into the workdir; finished policies are kept when the command is run again.
"""

from absl import app, flags
from ml_collections import config_flags

from experiments.configs import evaluate as evaluate_config
from spacer_jax.apps import evaluate
from spacer_jax.training import runs
from spacer_jax.training.config_checks import check_command_line, validate
from spacer_jax.training.console import (
    parse_flags,
    quiet_third_party_logging,
    report_user_errors,
)

_DEFAULT_CONFIG = 'experiments/configs/evaluate.py'
if __name__ == '__main__':
  # Unknown --config.* keys get one line and a did-you-mean. Here, not next to app.run:
  # without --config, DEFINE_config_file parses the default and its overrides at once.
  check_command_line(_DEFAULT_CONFIG)
_CONFIG = config_flags.DEFINE_config_file(
    'config', _DEFAULT_CONFIG, 'Evaluation config.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Report directory.', required=True)
_CHECKPOINTS = flags.DEFINE_list(
    'checkpoints', [], 'Policies to evaluate besides the baselines: spacer:DIR, ppo:DIR, '
    'hr_ppo:DIR (train_spacer workdirs), reference:PATH (reference artifact / workdir).')
_NUM_SCENARIOS = flags.DEFINE_integer('num_scenarios', None,
                                      'Overrides --config.data.num_scenarios.')


def main(argv):
  del argv
  quiet_third_party_logging()
  config = _CONFIG.value
  if _NUM_SCENARIOS.value is not None:
    with config.unlocked():
      config.data.num_scenarios = _NUM_SCENARIOS.value
  # Bad values (--num_scenarios included) and an unusable workdir are refused before
  # any JAX work or file.
  validate(config, evaluate_config.RULES)
  runs.check_workdir(_WORKDIR.value)
  evaluate.run_evaluation(config, _WORKDIR.value, _CHECKPOINTS.value)


if __name__ == '__main__':
  app.run(report_user_errors(main), flags_parser=parse_flags)
