"""Timing shared by the benchmark scripts (run as ``python benchmarks/<name>.py``, so
this folder is on ``sys.path``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


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


def tile_batch(tree: Any, batch: int) -> Any:
  """``tree`` (leaves with a leading batch axis of B scenarios) repeated cyclically to
  ``batch`` rows on the device: row i is scenario ``i % B``. Timing does not need
  distinct scenes, and generating them is host-side (~0.1 s per 20000-point scene)."""
  index = jnp.arange(batch) % jax.tree.leaves(tree)[0].shape[0]
  return jax.tree.map(lambda a: jnp.take(jnp.asarray(a), index, axis=0), tree)


def report_json(result: Any, path: str = '') -> None:
  """Prints ``result`` as indented JSON and, with ``path``, writes it there too."""
  import json
  print(json.dumps(result, indent=2))
  if path:
    with open(path, 'w') as f:
      json.dump(result, f, indent=2)
