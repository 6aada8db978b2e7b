"""Console hygiene: third-party INFO logging is off by default, on when asked for."""

import logging

from absl import logging as absl_logging

from spacer_jax.training.console import quiet_third_party_logging


def test_third_party_info_logging_is_quiet_unless_asked_for():
  before = absl_logging.get_verbosity()
  try:
    absl_logging.set_verbosity(absl_logging.INFO)
    assert not quiet_third_party_logging(['prog', '--verbosity=1'])
    assert absl_logging.get_verbosity() == absl_logging.INFO
    assert not quiet_third_party_logging(['prog', '-v', '1'])
    assert quiet_third_party_logging(['prog', '--workdir=/tmp/x'])
    assert absl_logging.get_verbosity() == absl_logging.WARNING
    assert logging.getLogger('orbax').getEffectiveLevel() >= logging.WARNING
  finally:
    absl_logging.set_verbosity(before)


def test_main_job_states_its_plan_up_front():
  from experiments.configs import spacer as spacer_config
  from spacer_jax.apps.train_spacer import run_plan
  plan = run_plan(spacer_config.get_config('cpu'), 200, 40, 12_800)
  assert 'the packaged default reference (loads in seconds)' in plan
  assert '40 iterations x 12,800 agent-steps, at most 40m00s' in plan
  assert 'ETA' in plan
  assert 'none (no anchor)' in run_plan(spacer_config.get_config('cpu,ppo'), 200, 1, 1)
