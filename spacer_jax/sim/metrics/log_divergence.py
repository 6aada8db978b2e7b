"""Log divergence: how far the simulated object is from its logged position."""

from __future__ import annotations

import jax.numpy as jnp

from spacer_jax.sim.datatypes import SimulatorState
from spacer_jax.sim.metrics.base import MetricResult


def log_divergence(state: SimulatorState) -> MetricResult:
  """L2 distance in metres between simulated and logged xy at ``state.timestep``.

  Returns:
    :class:`MetricResult` ``(..., num_objects)``, valid where both are valid.
  """
  sim, log = state.current_sim_trajectory, state.current_log_trajectory
  dist = jnp.hypot(sim.x - log.x, sim.y - log.y)[..., 0]
  return MetricResult.create(dist, (sim.valid & log.valid)[..., 0])
