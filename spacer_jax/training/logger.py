"""Metric logging: TensorBoard event files plus a one-line console progress report.

TensorBoard files are written with TensorFlow's own summary writer (TensorFlow is
imported with its GPUs hidden, so it never takes accelerator memory). Every value is
fetched to the host only here, between compiled steps. In a multi-process run only
process 0 writes (the others still check for NaN).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np


def _to_float(value: Any) -> float:
  return float(np.asarray(value).astype(np.float64).mean())


def format_progress(step: int, total: Optional[int], scalars: Mapping[str, float],
                    keys: Optional[list[str]] = None) -> str:
  """``'step 120/1000 | loss 1.234 | tokens/s 5.6e+04'``; ``keys`` picks and orders the
  scalars shown (default: all, sorted)."""
  head = f'step {step}' + (f'/{total}' if total else '')
  keys = sorted(scalars) if keys is None else [k for k in keys if k in scalars]
  parts = [head]
  for k in keys:
    v = scalars[k]
    parts.append(f'{k} {v:.4g}' if abs(v) < 1e4 or v == 0 else f'{k} {v:.3g}')
  return ' | '.join(parts)


class MetricLogger:
  """Writes scalars to ``WORKDIR/tb`` (TensorBoard) and ``WORKDIR/metrics.jsonl``.

  Args:
    workdir: run directory.
    print_keys: scalars shown on the console progress line (others go to files only).
    total_steps: shown as ``step k/total`` on the console.
    nan_guard: raise ``FloatingPointError`` naming the metric when a logged value is
      NaN or infinite, so a diverged run stops instead of training on garbage.
    active: whether this process writes anything; default: only process 0 of a
      multi-process run. An inactive logger still converts values, applies the NaN
      guard (so every process stops together) and returns the floats.
  """

  def __init__(self, workdir: str, print_keys: Optional[list[str]] = None,
               total_steps: Optional[int] = None, nan_guard: bool = True,
               stream=None, active: Optional[bool] = None):
    if active is None:
      import jax
      active = jax.process_index() == 0
    self.active = active
    self._writer = self._jsonl = None
    if active:
      from spacer_jax.data.womd._tf import tf  # GPUs hidden from TensorFlow.
      os.makedirs(workdir, exist_ok=True)
      self._writer = tf.summary.create_file_writer(os.path.join(workdir, 'tb'))
      self._tf = tf
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    self.print_keys = print_keys
    self.total_steps = total_steps
    self.nan_guard = nan_guard
    self._stream = stream or sys.stdout
    self._last = None

  def write(self, step: int, scalars: Mapping[str, Any], prefix: str = '',
            echo: bool = True) -> dict[str, float]:
    """Logs ``scalars`` at ``step``; returns them as Python floats."""
    values = {f'{prefix}{k}': _to_float(v) for k, v in scalars.items()}
    if self.nan_guard:
      bad = [k for k, v in values.items() if not math.isfinite(v)]
      if bad:
        raise FloatingPointError(f'non-finite metrics at step {step}: {bad}')
    if not self.active:
      return values
    with self._writer.as_default():
      for k, v in values.items():
        self._tf.summary.scalar(k, v, step=int(step))
    self._writer.flush()
    self._jsonl.write(json.dumps({'step': int(step), 'time': time.time(), **values}) + '\n')
    self._jsonl.flush()
    if echo:
      keys = None if self.print_keys is None else [f'{prefix}{k}' for k in self.print_keys]
      print(format_progress(step, self.total_steps, values, keys), file=self._stream,
            flush=True)
    return values

  def close(self) -> None:
    if self.active:
      self._writer.close()
      self._jsonl.close()
