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


def format_duration(seconds: float) -> str:
  """``'45s'``, ``'3m07s'``, ``'1h02m'``."""
  seconds = max(0, int(round(seconds)))
  if seconds < 60:
    return f'{seconds}s'
  if seconds < 3600:
    return f'{seconds // 60}m{seconds % 60:02d}s'
  return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'


class Progress:
  """Elapsed time, an ETA and a bar for a loop of ``total`` steps.

  The ETA is the smaller of (remaining steps x seconds per step) and what is left of
  ``time_budget_s``. Seconds per step are measured from the first step this process
  logged on, so the first step's compile time and a resumed run's earlier steps do not
  skew it.

  Args:
    total: steps of the whole run (None: unknown, no bar or step-based ETA).
    time_budget_s: wall-clock budget of this process's training loop (0/None: none).
    clock: seconds (tests pass a fake one).
  """

  def __init__(self, total: Optional[int], time_budget_s: Optional[float] = None,
               clock=time.perf_counter):
    self.total = total
    self.budget = time_budget_s or None
    self._clock = clock
    self._start = clock()
    self._first: Optional[tuple[int, float]] = None  # (step, time) of the first update.

  def elapsed(self) -> float:
    return self._clock() - self._start

  def eta(self, step: int) -> Optional[float]:
    """Seconds until the run ends; None before a rate or a budget is known."""
    now = self._clock()
    if self._first is None:
      self._first = (step, now)
    estimates = []
    first_step, first_time = self._first
    if self.total and step > first_step:
      per_step = (now - first_time) / (step - first_step)
      estimates.append(per_step * max(self.total - step, 0))
    if self.budget:
      estimates.append(max(self.budget - (now - self._start), 0.0))
    return min(estimates) if estimates else None

  def describe(self, step: int, width: int = 20) -> str:
    """``'[#####---------------] 25% | 1m02s elapsed | eta 3m05s'`` (fraction of steps,
    or of the time budget when that ends the run first)."""
    eta = self.eta(step)
    parts = []
    fraction = None
    if self.total:
      fraction = min(step / self.total, 1.0)
    if self.budget:  # Then an ETA exists: the budget bounds it.
      fraction = max(fraction or 0.0, min(self.elapsed() / self.budget, 1.0))
    if fraction is not None:
      filled = int(round(fraction * width))
      parts.append(f'[{"#" * filled}{"-" * (width - filled)}] {100 * fraction:.0f}%')
    parts.append(f'{format_duration(self.elapsed())} elapsed')
    if eta is not None:
      parts.append(f'eta {format_duration(eta)}')
    return ' | '.join(parts)


def format_progress(step: int, total: Optional[int], scalars: Mapping[str, float],
                    keys: Optional[list[str]] = None, timing: str = '') -> str:
  """``'step 120/1000 | loss 1.234 | tokens/s 5.6e+04'``; ``keys`` picks and orders the
  scalars shown (default: all, sorted); ``timing`` (e.g. ``Progress.describe``) follows
  the step."""
  head = f'step {step}' + (f'/{total}' if total else '')
  keys = sorted(scalars) if keys is None else [k for k in keys if k in scalars]
  parts = [head] + ([timing] if timing else [])
  for k in keys:
    v = scalars[k]
    parts.append(f'{k} {v:.4g}' if abs(v) < 1e4 or v == 0 else f'{k} {v:.3g}')
  return ' | '.join(parts)


class MetricLogger:
  """Writes scalars to ``WORKDIR/tb`` (TensorBoard) and ``WORKDIR/metrics.jsonl``.

  Args:
    workdir: run directory.
    print_keys: scalars shown on the console progress line (others go to files only).
    total_steps: shown as ``step k/total`` on the console, with a bar and an ETA.
    time_budget_s: the loop's wall-clock budget, which caps the ETA.
    nan_guard: raise ``FloatingPointError`` naming the metric when a logged value is
      NaN or infinite, so a diverged run stops instead of training on garbage.
    active: whether this process writes anything; default: only process 0 of a
      multi-process run. An inactive logger still converts values, applies the NaN
      guard (so every process stops together) and returns the floats.
  """

  def __init__(self, workdir: str, print_keys: Optional[list[str]] = None,
               total_steps: Optional[int] = None, nan_guard: bool = True,
               stream=None, active: Optional[bool] = None,
               time_budget_s: Optional[float] = None):
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
    self.progress = Progress(total_steps, time_budget_s)
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
      print(format_progress(step, self.total_steps, values, keys,
                            timing=self.progress.describe(step)),
            file=self._stream, flush=True)
    return values

  def close(self) -> None:
    if self.active:
      self._writer.close()
      self._jsonl.close()
