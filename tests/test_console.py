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
