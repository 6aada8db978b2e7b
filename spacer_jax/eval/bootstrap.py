"""Scene-level bootstrap intervals (host-side numpy).

Episodes of one scene are correlated (the same map, the same logged agents, rollouts
with common random numbers across planners), so the unit resampled is the scene: each
resample draws ``S`` scenes with replacement and recomputes the statistic from every
episode of the drawn scenes. The same draws are used for every planner and mode, so
differences and rank correlations between them are paired.
"""

from __future__ import annotations

import numpy as np


def scene_resamples(num_scenes: int, num_resamples: int, seed: int = 0) -> np.ndarray:
  """``(num_resamples, num_scenes)`` int scene indices drawn with replacement."""
  if num_scenes < 1 or num_resamples < 1:
    raise ValueError(f'scene_resamples needs >= 1 scene and >= 1 resample, got '
                     f'{num_scenes} and {num_resamples}.')
  return np.random.default_rng(seed).integers(0, num_scenes, (num_resamples, num_scenes))


def per_scene_sums(values, valid) -> tuple[np.ndarray, np.ndarray]:
  """Sums and counts of valid episodes per scene: ``values``/``valid`` ``(R, S)``
  (rollouts x scenes) -> two ``(S,)`` arrays."""
  values = np.asarray(values, np.float64)
  valid = np.asarray(valid, bool)
  if values.ndim != 2 or values.shape != valid.shape:
    raise ValueError(f'per_scene_sums expects values and valid of one (rollouts, scenes) '
                     f'shape, got {values.shape} and {valid.shape}.')
  return np.where(valid, values, 0.0).sum(0), valid.sum(0).astype(np.float64)


def resampled_means(sums: np.ndarray, counts: np.ndarray, draws: np.ndarray) -> np.ndarray:
  """The mean over valid episodes of each resample's scenes: ``(B,)`` (NaN where a
  resample drew no valid episode)."""
  total, n = sums[draws].sum(-1), counts[draws].sum(-1)
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(n > 0, total / np.maximum(n, 1.0), np.nan)


def percentile_interval(samples, level: float = 0.95) -> tuple[float, float]:
  """The central ``level`` percentile interval of the finite samples (NaNs if none)."""
  if not 0.0 < level < 1.0:
    raise ValueError(f'percentile_interval: level must be in (0, 1), got {level}.')
  a = np.asarray(samples, np.float64)
  a = a[np.isfinite(a)]
  if not a.size:
    return float('nan'), float('nan')
  tail = 100.0 * (1.0 - level) / 2.0
  lo, hi = np.percentile(a, [tail, 100.0 - tail])
  return float(lo), float(hi)


__all__ = ['per_scene_sums', 'percentile_interval', 'resampled_means', 'scene_resamples']
