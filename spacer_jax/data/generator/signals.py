"""Traffic-signal phase plans and their logged ``TrafficLights``.

A map lists signal groups (lane ids that are green together). The plan cycles through
the groups: GO, then CAUTION (yellow), then an all-red clearance, so lanes of different
groups are never green at the same time. Each scenario starts at a random point of the
cycle with random phase durations.
"""

from __future__ import annotations

import numpy as np

from spacer_jax.data.generator.lanes import Lane
from spacer_jax.sim.datatypes import TrafficLightStates as S

YELLOW_S = 3.0
ALL_RED_S = 1.5


def phase_plan(rng: np.random.Generator, groups: list[list[int]], num_steps: int,
               dt: float = 0.1) -> dict[int, np.ndarray]:
  """Per-step states ``(num_steps,)`` for every lane of every group (Waymax values)."""
  if not groups:
    return {}
  greens = rng.uniform(7.0, 14.0, len(groups))
  slot = greens + YELLOW_S + ALL_RED_S
  cycle = slot.sum()
  start = np.concatenate([[0.0], np.cumsum(slot)[:-1]])
  t = (np.arange(num_steps) * dt + rng.uniform(0, cycle)) % cycle
  out: dict[int, np.ndarray] = {}
  for g, lanes in enumerate(groups):
    u = t - start[g]
    state = np.full(num_steps, int(S.STOP), np.int32)
    state[(u >= 0) & (u < greens[g])] = int(S.GO)
    state[(u >= greens[g]) & (u < greens[g] + YELLOW_S)] = int(S.CAUTION)
    for lid in lanes:
      out[lid] = state
  return out


def traffic_light_arrays(lanes: dict[int, Lane], states: dict[int, np.ndarray],
                         start: int, num_steps: int, max_lights: int = 16
                         ) -> tuple[np.ndarray, ...]:
  """Logged lights ``(L, num_steps)``: x, y, state, lane_ids, valid for vehicle lanes.

  The light's position is the stop point: the end of the controlled lane, where it
  enters the junction. Walkway signals drive pedestrians but are not logged (WOMD has
  none).
  """
  ids = [lid for lid in sorted(states) if lanes[lid].agent == 'veh'][:max_lights]
  n = len(ids)
  x = np.zeros((n, num_steps))
  y = np.zeros((n, num_steps))
  st = np.zeros((n, num_steps), np.int32)
  lid_a = np.zeros((n, num_steps), np.int32)
  for i, lid in enumerate(ids):
    x[i], y[i] = lanes[lid].xy[-1]
    st[i] = states[lid][start:start + num_steps]
    lid_a[i] = lid
  return x, y, st, lid_a, np.ones((n, num_steps), bool)
