"""Parked cars: candidate spots along the maps' parking strips.

WOMD scenes hold many parked vehicles (often a fifth to a third of the vehicles in a
scene): still for the whole log, along the curb, out of the lanes' driving paths. The
maps leave a parking strip between the curb lane and the road edge of many surface
streets (:class:`~spacer_jax.data.generator.maps.ParkingStrip`); this module lines
each strip with a row of non-overlapping car-sized spots, nose to tail with human
gaps and the occasional longer gap (driveways, hydrants). The assembler then parks a
car in some of the spots near the SDC, so that their share of the logged vehicles
matches the scene's drawn share.

Parked cars are not simulated: nobody drives in a parking strip, so they never
interact with traffic (the assembler's overlap check still drops any that would touch
someone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spacer_jax.data.generator import geometry as geo
from spacer_jax.data.generator.maps import RoadMap

# Gap between a parked car's curb-side flank and the road edge (m).
CURB_GAP_M = (0.1, 0.45)
# Clearance kept between a parked car and the lane boundary (m).
LANE_CLEARANCE_M = 0.1
# Gap between consecutive parked cars (m); with this probability a spot is followed
# by a longer gap of LONG_GAP_M (driveways, hydrants, bus stops).
GAP_M = (0.7, 2.5)
LONG_GAP_P = 0.15
LONG_GAP_M = (4.0, 15.0)


@dataclass
class Spots:
  """Candidate parking spots ``(M,)``: centre x, y (m), heading (rad), length, width,
  height (m) of the car that would park there."""

  x: np.ndarray
  y: np.ndarray
  yaw: np.ndarray
  length: np.ndarray
  width: np.ndarray
  height: np.ndarray

  @classmethod
  def empty(cls) -> Spots:
    return cls(*[np.zeros(0) for _ in range(6)])

  @property
  def num(self) -> int:
    return len(self.x)

  def take(self, idx: np.ndarray) -> Spots:
    return Spots(**{k: v[idx] for k, v in vars(self).items()})


def parking_spots(rng: np.random.Generator, road: RoadMap) -> Spots:
  """Lines every parking strip of ``road`` with spots (car sizes drawn per spot).

  A spot's car keeps ``CURB_GAP_M`` from the road edge and ``LANE_CLEARANCE_M`` from
  the lane boundary, and its box lies within the strip's stretch where parking is
  allowed; consecutive spots of a strip never overlap.
  """
  parts = []
  for strip in road.parking:
    s = geo.arc_length(strip.xy)
    total = s[-1]
    if total < 6.0:
      continue
    # Enough spots for the whole strip: no spot is shorter than 3.8 + 0.7 m.
    n = int(total / 4.5) + 1
    length = np.clip(rng.normal(4.6, 0.35, n), 3.8, 5.4)
    width = np.clip(rng.normal(1.85, 0.08, n), 1.65,
                    min(2.05, strip.width - LANE_CLEARANCE_M - CURB_GAP_M[0]))
    height = np.clip(rng.normal(1.55, 0.12, n), 1.35, 2.0)
    gap = rng.uniform(*GAP_M, n) + np.where(rng.random(n) < LONG_GAP_P,
                                            rng.uniform(*LONG_GAP_M, n), 0.0)
    start = rng.uniform(0.0, 6.0) + np.concatenate([[0.0], np.cumsum(length + gap)[:-1]])
    mid = start + length / 2
    ok = start + length <= total
    if not ok.any():
      continue
    mid, length, width, height = mid[ok], length[ok], width[ok], height[ok]
    xy = np.stack([np.interp(mid, s, strip.xy[:, 0]), np.interp(mid, s, strip.xy[:, 1])], 1)
    # Heading of the strip at the spot (its chord over the car's length), and the
    # lateral place: curb side is the strip's right.
    back = np.stack([np.interp(mid - length / 2, s, strip.xy[:, c]) for c in (0, 1)], 1)
    front = np.stack([np.interp(mid + length / 2, s, strip.xy[:, c]) for c in (0, 1)], 1)
    yaw = np.arctan2(front[:, 1] - back[:, 1], front[:, 0] - back[:, 0])
    room = strip.width - width - LANE_CLEARANCE_M  # curb gap at most this
    curb = rng.uniform(CURB_GAP_M[0], np.maximum(np.minimum(CURB_GAP_M[1], room),
                                                 CURB_GAP_M[0]))
    shift = strip.width / 2 - curb - width / 2  # towards the curb (right), m
    xy = xy + shift[:, None] * np.stack([np.sin(yaw), -np.cos(yaw)], 1)
    yaw = yaw + rng.normal(0.0, 0.01, len(yaw))  # not parked perfectly parallel
    parts.append((xy[:, 0], xy[:, 1], yaw, length, width, height))
  if not parts:
    return Spots.empty()
  return Spots(*[np.concatenate(c) for c in zip(*parts)])
