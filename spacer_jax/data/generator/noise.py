"""Rare log noise, on request: one logged collision, or one vehicle parked over a curb.

Real logs are not perfectly clean: a tracked box may graze a neighbour's during a close
pass, and cars park with two wheels on the kerb. With ``collision_noise_rate`` /
``offroad_noise_rate`` a scenario gets exactly ONE such event, which the project's own
``overlap`` / ``offroad`` metrics find on the log; the rest of the log stays clean.

Both functions work on the final objects' arrays ``(N, T)`` (already selected and
ordered, SDC first) and check their result: they give up (returning None) rather than
create a second event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spacer_jax.data.generator import safety
from spacer_jax.data.generator.traffic import DT, VEHICLE

# Half width (steps) of the smooth tracking glitch that produces a logged collision.
GLITCH_HALF_STEPS = 10
# Largest glitch (m) we accept; closer near-misses are tried first.
MAX_GLITCH_M = 3.0
# The parked car's road-side edge lies this far inside the road edge (m): its kerb-side
# wheels are over the kerb, the rest of it stays clear of the rightmost lane's traffic.
PARK_INSIDE_M = 0.6


@dataclass
class Objects:
  """Per-object log arrays: x, y, yaw, vel_x, vel_y, valid ``(N, T)``; length, width,
  height, types ``(N,)``. Metres, radians, m/s."""

  x: np.ndarray
  y: np.ndarray
  yaw: np.ndarray
  vel_x: np.ndarray
  vel_y: np.ndarray
  valid: np.ndarray
  length: np.ndarray
  width: np.ndarray
  height: np.ndarray
  types: np.ndarray

  def corners(self) -> np.ndarray:
    """Box corners ``(N, T, 4, 2)``."""
    return safety.box_corners(self.x, self.y, self.length[:, None], self.width[:, None],
                              self.yaw)

  def pairs(self) -> np.ndarray:
    """Overlapping object pairs ``(P, 2)`` anywhere in the log."""
    return safety.overlapping_pairs(self.x, self.y, self.yaw, self.length, self.width,
                                    self.valid)


def _bump(t: int, center: int, half: int) -> tuple[np.ndarray, np.ndarray]:
  """Raised-cosine bump ``(T,)`` peaking at 1 on ``center`` and its time derivative
  (1/s), zero beyond ``half`` steps."""
  u = (np.arange(t) - center) / half
  inside = np.abs(u) < 1
  b = np.where(inside, 0.5 * (1 + np.cos(np.pi * u)), 0.0)
  db = np.where(inside, -0.5 * np.pi * np.sin(np.pi * u) / (half * DT), 0.0)
  return b, db


def inject_collision(rng: np.random.Generator, obj: Objects, sdc: int,
                     edges: safety.RoadEdges, exclude: int | None = None
                     ) -> tuple[int, int] | None:
  """Turns the closest near-miss between two vehicles into a brief box overlap.

  One object of the pair (never the SDC) is displaced towards the other by a smooth
  ~2 s tracking glitch (positions and velocities stay consistent), just enough that
  the boxes overlap around the closest approach. Modifies ``obj`` in place. Object
  ``exclude`` (e.g. a parked car added as noise) takes no part.

  Returns:
    The colliding pair (indices into ``obj``), or None when no pair qualified: the
    glitch would exceed ``MAX_GLITCH_M``, touch a third object, or push a vehicle off
    the road.
  """
  n, t = obj.x.shape
  veh = np.flatnonzero((obj.types == VEHICLE) & (np.arange(n) != exclude))
  if len(veh) < 2:
    return None
  both = obj.valid[veh][:, None] & obj.valid[veh][None, :]
  dist = np.hypot(obj.x[veh][:, None] - obj.x[veh][None, :],
                  obj.y[veh][:, None] - obj.y[veh][None, :])
  dist = np.where(both, dist, np.inf)
  closest = dist.min(-1)
  size = 0.5 * (obj.length[veh] + obj.width[veh]) / 2
  clear = closest - size[:, None] - size[None, :]
  clear[np.tril_indices(len(veh))] = np.inf
  cand = np.argsort(clear, axis=None)[:12]
  base = obj.pairs()
  corners = obj.corners()
  deltas = np.arange(0.05, MAX_GLITCH_M + 1e-9, 0.05)
  for flat in cand:
    a, b = np.unravel_index(flat, clear.shape)
    if not np.isfinite(clear[a, b]):
      break
    i, j = int(veh[a]), int(veh[b])
    if i == sdc or (j != sdc and rng.random() < 0.5):
      i, j = j, i  # i is displaced: never the SDC
    tc = int(np.argmin(np.where(obj.valid[i] & obj.valid[j],
                                np.hypot(obj.x[i] - obj.x[j], obj.y[i] - obj.y[j]),
                                np.inf)))
    u = np.array([obj.x[j, tc] - obj.x[i, tc], obj.y[j, tc] - obj.y[i, tc]])
    u /= max(np.linalg.norm(u), 1e-9)
    # Smallest displacement at the closest approach that makes the boxes overlap, plus
    # 0.15 m so the overlap is unambiguous.
    moved = corners[i, tc][None] + deltas[:, None, None] * u
    hit = safety.box_overlap(moved, np.broadcast_to(corners[j, tc], moved.shape))
    if not hit.any():
      continue
    delta = deltas[np.argmax(hit)] + 0.15
    if delta > MAX_GLITCH_M:
      continue
    bump, dbump = _bump(t, tc, GLITCH_HALF_STEPS)
    trial = Objects(**{k: v.copy() for k, v in vars(obj).items()})
    trial.x[i] += delta * u[0] * bump
    trial.y[i] += delta * u[1] * bump
    trial.vel_x[i] += delta * u[0] * dbump
    trial.vel_y[i] += delta * u[1] * dbump
    pairs = trial.pairs()
    new = {tuple(p) for p in pairs} - {tuple(p) for p in base}
    if new != {(min(i, j), max(i, j))} or len(pairs) != len(base) + 1:
      continue
    window = trial.valid[i] & (bump > 0)
    if edges.num and (edges.signed_distance(trial.corners()[i][window]) > -0.1).any():
      continue
    for k, v in vars(trial).items():
      getattr(obj, k)[...] = v
    return i, j
  return None


def park_over_curb(rng: np.random.Generator, obj: Objects, anchor: np.ndarray,
                   edges: safety.RoadEdges, edge_lines: list[np.ndarray]
                   ) -> Objects | None:
  """Adds a vehicle parked along a straight road edge with its kerb-side wheels over
  the kerb, 8-45 m from ``anchor`` (the SDC's current position), present and still
  for the whole log.

  Returns:
    ``obj`` with the parked car appended (the off-road metric flags it at every step),
    or None when no spot 8-45 m away is free of every other object's box.
  """
  n, t = obj.x.shape
  spots = []
  for ln in edge_lines:
    if len(ln) < 26:
      continue
    seg = np.diff(ln, axis=0)
    head = np.unwrap(np.arctan2(seg[:, 1], seg[:, 0]))
    # Locally straight: heading within 0.05 rad over +-6 m (12 samples each way).
    win = np.lib.stride_tricks.sliding_window_view(head, 25)
    k = np.arange(12, 12 + len(win))
    gap = np.hypot(ln[k, 0] - anchor[0], ln[k, 1] - anchor[1])
    ok = (np.abs(win - win[:, 12:13]).max(1) < 0.05) & (gap > 8.0) & (gap < 45.0)
    spots += [(ln[i], head[i]) for i in k[ok]]
  if not spots:
    return None
  length = float(np.clip(rng.normal(4.6, 0.3), 4.0, 5.2))
  width = float(np.clip(rng.normal(1.85, 0.06), 1.7, 2.0))
  height = float(np.clip(rng.normal(1.55, 0.1), 1.4, 1.8))
  for k in rng.permutation(len(spots))[:40]:
    p, h = spots[k]
    right = np.array([np.sin(h), -np.cos(h)])  # off-road side of the edge
    c = p + right * (0.5 * width - PARK_INSIDE_M)
    car = Objects(x=np.full((1, t), c[0]), y=np.full((1, t), c[1]), yaw=np.full((1, t), h),
                  vel_x=np.zeros((1, t)), vel_y=np.zeros((1, t)),
                  valid=np.ones((1, t), bool), length=np.array([length]),
                  width=np.array([width]), height=np.array([height]),
                  types=np.array([VEHICLE]))
    dist = edges.signed_distance(car.corners()[0, 0])
    if not (dist.max() > 0.5 and dist.min() < 0):
      continue
    both = Objects(**{f: np.concatenate([getattr(obj, f), getattr(car, f)])
                      for f in vars(obj)})
    if len(both.pairs()) != len(obj.pairs()):
      continue  # it would touch someone
    return both
  return None
