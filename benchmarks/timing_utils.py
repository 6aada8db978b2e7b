"""Timing shared by the benchmark scripts (run as ``python benchmarks/<name>.py``, so
this folder is on ``sys.path``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax


def best_time(fn: Callable[..., Any], *args: Any, repeats: int) -> float:
  """Seconds of the fastest of ``repeats`` calls ``fn(*args)`` after one warm-up
  (compile) call; every call is waited for with ``block_until_ready``."""
  jax.block_until_ready(fn(*args))
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best
