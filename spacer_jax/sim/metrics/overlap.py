"""Overlap (collision) metric: does an object's box overlap any other valid object's?"""

from __future__ import annotations

import jax.numpy as jnp

from spacer_jax.sim.datatypes import SimulatorState
from spacer_jax.sim.metrics import boxes
from spacer_jax.sim.metrics.base import MetricResult


def overlap(state: SimulatorState) -> MetricResult:
  """1.0 where an object's box overlaps another valid object's at ``state.timestep``.

  Boxes are the 2D rotated rectangles (x, y, length, width, yaw) of the current
  simulated step. Two boxes overlap when their projections on all four separating axes
  (both boxes' heading and lateral axes) overlap by a strictly positive margin; boxes
  that merely touch do not. Invalid objects neither overlap nor are overlapped.

  Returns:
    :class:`MetricResult` ``(..., num_objects)``, valid where the object is valid.
  """
  traj = state.current_sim_trajectory
  x, y, yaw = traj.x[..., 0], traj.y[..., 0], traj.yaw[..., 0]
  length, width, valid = traj.length[..., 0], traj.width[..., 0], traj.valid[..., 0]
  hit = boxes.pairwise_overlap(x, y, length, width, yaw)
  n = x.shape[-1]
  # Only valid others count; an object never overlaps itself.
  hit = hit & valid[..., None, :] & ~jnp.eye(n, dtype=bool)
  return MetricResult.create(jnp.any(hit, axis=-1), valid)
