"""Lifting single-scenario code to any number of leading batch dimensions.

Metric kernels, observations, map encoders and evaluation features are written for one
scenario (no batch dims), which keeps gathers and index arithmetic simple;
:func:`map_leading_dims` wraps them in one ``jax.vmap`` per leading dimension, so they
accept batch shapes ``()``, ``(B,)``, ``(B1, B2)``... and still compose with an outer
user ``vmap`` or ``jit``. The one copy of that loop for the whole library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import jax

F = TypeVar('F', bound=Callable)


def map_leading_dims(fn: F, batch_ndim: int) -> F:
  """Returns ``fn`` vmapped over ``batch_ndim`` leading axes of every argument leaf."""
  for _ in range(batch_ndim):
    fn = jax.vmap(fn)
  return fn


__all__ = ['map_leading_dims']
