"""WOMD's ``objects_of_interest``: the pair of objects whose interaction matters most.

WOMD's interactive scenarios mark two interacting objects. Here the pair is chosen
from the traffic model's own knowledge of who must give way to whom:
  1. a yielding interaction: two objects whose routes cross (a crossing zone) or join
     with one of them yielding, at least one of them moving, and the smallest closest
     approach over the log below ``YIELD_RADIUS_M``;
  2. otherwise the closest approach between two moving road users (vehicles,
     cyclists) below ``PASS_RADIUS_M``;
  3. otherwise nobody (many WOMD scenarios mark no pair).
"""

from __future__ import annotations

import numpy as np

from spacer_jax.data.generator.lanes import RouteTable
from spacer_jax.data.generator.traffic import CYCLIST, VEHICLE

YIELD_RADIUS_M = 20.0
PASS_RADIUS_M = 8.0
MOVING_MPS = 1.0


def objects_of_interest(tab: RouteTable, route: np.ndarray, x: np.ndarray, y: np.ndarray,
                        valid: np.ndarray, speed: np.ndarray, types: np.ndarray
                        ) -> np.ndarray:
  """Marks at most two interacting objects.

  Args:
    tab: the scenario's route table.
    route: ``(N,)`` route index of each object (-1: not on a route, e.g. parked).
    x, y, valid, speed: ``(N, T)`` logged positions (m), validity and speed (m/s).
    types: ``(N,)`` object types (1 vehicle, 2 pedestrian, 3 cyclist).

  Returns:
    ``(N,)`` bool, True for the two objects of the chosen pair (all False if none).
  """
  n = len(route)
  out = np.zeros(n, bool)
  if n < 2:
    return out
  on = route >= 0
  r = np.where(on, route, 0)
  ri, rj = r[:, None], r[None, :]
  cross = (~np.isnan(tab.zone[ri, rj, :, 0])).any(-1)
  yields = (tab.priority[ri, rj] == 1) | (tab.priority[rj, ri] == 1)
  upper = np.triu(np.ones((n, n), bool), 1)
  moving = ((speed > MOVING_MPS) & valid).any(-1)
  road = (types == VEHICLE) | (types == CYCLIST)
  mv = moving & road
  tiers = (upper & on[:, None] & on[None, :] & (cross | yields)
           & (moving[:, None] | moving[None, :]),
           upper & mv[:, None] & mv[None, :])
  for mask, radius in zip(tiers, (YIELD_RADIUS_M, PASS_RADIUS_M)):
    i, j = np.nonzero(mask)
    if not len(i):
      continue
    # Closest approach of each candidate pair over the steps both are seen.
    dist = np.where(valid[i] & valid[j], np.hypot(x[i] - x[j], y[i] - y[j]), np.inf)
    closest = dist.min(-1)
    k = int(np.argmin(closest))
    if closest[k] < radius:
      out[[i[k], j[k]]] = True
      return out
  return out
