"""What a person sees on the console: third-party INFO logging off unless asked for.

orbax, TensorFlow and jax log every checkpoint step, thread and compile at INFO through
absl; in a tiny run that is over 90% of the console, burying the progress lines.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

_NOISY = ('absl', 'orbax', 'jax', 'tensorflow', 'etils', 'matplotlib')


def quiet_third_party_logging(argv: list[str] | None = None) -> bool:
  """Lowers absl and library loggers to WARNING unless the command line sets a
  verbosity (``--verbosity`` / ``-v``) or ``--verbose``; returns True when it did."""
  argv = sys.argv if argv is None else argv
  if any(a.startswith(('--verbosity', '-v=', '--v=', '--verbose')) or a == '-v'
         for a in argv[1:]):
    return False
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  try:
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)
  except ImportError:  # absl is a dependency; stay quiet without it too.
    pass
  for name in _NOISY:
    logging.getLogger(name).setLevel(logging.WARNING)
  return True


def _define_verbose_flag() -> None:
  from absl import flags
  if 'verbose' not in flags.FLAGS:
    flags.DEFINE_bool('verbose', False, 'Full tracebacks for user errors and INFO logs '
                      'of orbax / TensorFlow / jax.')


_define_verbose_flag()


# What a user's input can cause: a bad config value, a missing or malformed file, a
# workdir that cannot be used, a checkpoint of another run. Their messages name the
# field / file and what was expected, so one line says it all.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError,
               IsADirectoryError)


def verbose_requested(argv: list[str] | None = None) -> bool:
  """``--verbose`` on the command line (tracebacks for user errors too)."""
  argv = sys.argv if argv is None else argv
  return any(a in ('--verbose', '--verbose=true', '--verbose=True') for a in argv[1:])


def report_user_errors(main: Callable[[list[str]], Any],
                       also: tuple[type[BaseException], ...] = ()
                       ) -> Callable[[list[str]], Any]:
  """Wraps a binary's ``main``: a user error (:data:`USER_ERRORS` and ``also``) prints
  ``error: <message>`` on one line and exits with status 2 (tracebacks only with
  ``--verbose``); bugs still raise."""
  errors = USER_ERRORS + tuple(also)

  @functools.wraps(main)
  def wrapped(argv: list[str]) -> Any:
    try:
      return main(argv)
    except errors as e:
      if verbose_requested():
        raise
      message = str(e).strip() or type(e).__name__
      print(f'error: {message} (rerun with --verbose for the traceback)', file=sys.stderr,
            flush=True)
      sys.exit(2)
  return wrapped


def parse_flags(argv: list[str]) -> list[str]:
  """``app.run(..., flags_parser=parse_flags)``: an unknown, malformed or missing flag is
  a user error like the others, one ``error: ...`` line and exit status 2 (absl's own
  parser prints two lines and exits with 1)."""
  from absl import flags
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = ' '.join(str(e).split())  # Some flag errors span lines.
    print(f'error: {message} (--helpshort lists the flags)', file=sys.stderr, flush=True)
    sys.exit(2)


__all__ = ['USER_ERRORS', 'parse_flags', 'quiet_third_party_logging', 'report_user_errors',
           'verbose_requested']
