"""Roadgraph cropping: fitting a map into its point budget, keeping what the log needs.

A generated map holds the whole log, so it often has more points than
``num_roadgraph_points`` (long freeways in particular). :func:`crop_polylines` keeps,
first, the map around every logged position (ordered by distance to the logged
positions, painted lines after lanes and road edges), always as one contiguous stretch
per polyline; when even a thin neighbourhood of every object does not fit, it keeps
that neighbourhood around as many objects as fit, most important first, and says how
many (the assembler logs only those).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from spacer_jax.data.generator.maps import EDGE, MEDIAN
from spacer_jax.sim.builders import Polyline

ROAD_LINES = tuple(range(6, 14))
ROAD_EDGES = (EDGE, MEDIAN)
# When the roadgraph budget is short, painted lines matter less than lanes (they are
# kept as if this much farther from the logged objects, m) and road edges more (as if
# this much closer: an edge lies a lane's width or more beside the traffic, and
# without it the off-road metric has nothing to measure).
LINE_PENALTY_M = 4.0
EDGE_BONUS_M = 3.0
# Map points farther than this from every logged position (m) are kept only when the
# whole map fits the budget.
CROP_SEARCH_M = 400.0
# The smallest radius (m) around the logged objects a cropped map keeps (it then logs
# fewer objects instead): the lane under every object and, with EDGE_BONUS_M, the road
# edge next to it (lane centres lie up to a lane and a half from one).
MIN_CROP_RADIUS_M = 2.0


def _segment_cummin(v: np.ndarray, seg: np.ndarray) -> np.ndarray:
  """Running minimum of ``v`` ``(N,)`` restarting at every segment (``seg`` ``(N,)``
  non-decreasing segment ids, ``v`` finite and within +-1e5)."""
  big = 1e6   # later segments sit this much lower: earlier ones never win their min
  return np.minimum.accumulate(v - big * seg) + big * seg


def _hull(score: np.ndarray, line: np.ndarray) -> np.ndarray:
  """Hull scores ``(N,)`` of points with scores ``score`` on polylines ``line``.

  A point lies in its polyline's kept stretch for a threshold r (the stretch between
  the polyline's first and last point scoring <= r) iff some point at or before it
  and some point at or after it score <= r: its hull score is the larger of the
  running minima from both ends of its polyline.
  """
  rev = slice(None, None, -1)
  from_start = _segment_cummin(score, line)
  from_end = _segment_cummin(score[rev], line[rev].max() - line[rev])[rev]
  return np.maximum(from_start, from_end)


def _smallest(values: np.ndarray, budget: int) -> np.ndarray:
  """Mask of at most ``budget`` smallest entries: everything up to the budget-th value
  (strictly below it if ties would overshoot)."""
  if len(values) <= budget:
    return np.ones(len(values), bool)
  r = np.partition(values, budget - 1)[budget - 1]
  keep = values <= r
  return keep if keep.sum() <= budget else values < r


def _distance(pts: np.ndarray, xy: np.ndarray) -> np.ndarray:
  """Distance (m) from each point ``(N, 2)`` to the nearest of ``xy`` ``(M, 2)``,
  capped at ``2 * CROP_SEARCH_M``."""
  # On a 0.1 m grid: stopped objects repeat their position 91 times.
  q = np.unique(np.round(xy * 10.0).astype(np.int64), axis=0) / 10.0
  d, _ = cKDTree(q).query(pts, distance_upper_bound=CROP_SEARCH_M)
  return np.minimum(d, 2 * CROP_SEARCH_M)


def crop_polylines(polys: list[Polyline], xy: np.ndarray, rank: np.ndarray, budget: int
                   ) -> tuple[list[Polyline], int]:
  """Crops (already resampled) polylines to what the logged objects reach.

  Each map point is scored by its distance to the nearest logged position in ``xy``
  ``(M, 2)`` (plus ``LINE_PENALTY_M`` for painted lines, minus ``EDGE_BONUS_M`` for
  road edges); every polyline keeps the contiguous stretch between its first and last
  point scoring at most ``r``, with the largest ``r`` whose points fit ``budget``. So
  the map around every logged object goes first and every kept polyline stays one
  piece (its ``dir`` runs along it).

  When even ``r = MIN_CROP_RADIUS_M`` does not fit (long fast roads in a small
  budget), a thinner strip would lose the lanes and road edges under the objects.
  Then the map holds the surroundings (``r >= MIN_CROP_RADIUS_M``) of as many objects
  as fit, in the order of ``rank`` ``(M,)`` (each position's object; 0 = the SDC,
  always held): the caller drops the others.

  Returns:
    The cropped polylines and the number of objects (ranks ``0 .. n - 1``) whose
    surroundings they hold.
  """
  n = int(rank.max()) + 1
  counts = np.array([len(p.xyz) for p in polys])
  if counts.sum() <= budget:
    return polys, n
  pts = np.concatenate([np.asarray(p.xyz)[:, :2] for p in polys])
  line = np.repeat(np.arange(len(polys)), counts)
  types = np.array([p.type for p in polys])[line]
  adjust = (np.where(np.isin(types, ROAD_LINES), LINE_PENALTY_M, 0.0)
            - np.where(np.isin(types, ROAD_EDGES), EDGE_BONUS_M, 0.0))
  score = _distance(pts, xy) + adjust
  hull = _hull(score, line)
  if (hull <= MIN_CROP_RADIUS_M).sum() > budget:
    # Fewer objects only raise scores: only points scoring <= the radius now can count.
    cand = np.flatnonzero(score <= MIN_CROP_RADIUS_M)

    def fits(k: int) -> bool:   # the surroundings of objects 0 .. k - 1 fit
      part = np.full(len(pts), np.inf)
      part[cand] = _distance(pts[cand], xy[rank < k]) + adjust[cand]
      return (_hull(part, line) <= MIN_CROP_RADIUS_M).sum() <= budget

    lo, hi = 1, n - 1   # bisection for the most objects that fit (at least the SDC)
    while lo < hi:
      mid = (lo + hi + 1) // 2
      lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    n = lo
    hull = _hull(_distance(pts, xy[rank < n]) + adjust, line)
  at = np.flatnonzero(_smallest(hull, budget))
  kept_lines, start, size = np.unique(line[at], return_index=True, return_counts=True)
  first = np.concatenate([[0], np.cumsum(counts)[:-1]])
  lo = at[start] - first[kept_lines]
  return [Polyline(np.asarray(polys[k].xyz)[a:a + m], polys[k].type, polys[k].id)
          for k, a, m in zip(kept_lines, lo, size)], n
