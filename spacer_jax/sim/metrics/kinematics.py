"""Kinematic infeasibility: could a bicycle have driven the last simulated step?"""

from __future__ import annotations

import jax.numpy as jnp

from spacer_jax.sim.datatypes import TIMESTEP_SECONDS, SimulatorState
from spacer_jax.sim.dynamics.base import consecutive_steps
from spacer_jax.sim.dynamics.bicycle import bicycle_inverse
from spacer_jax.sim.metrics.base import MetricResult

MAX_ACCEL = 10.4  # m/s^2: larger |acceleration| is infeasible.
MAX_CURVATURE = 0.3  # 1/m: larger |curvature| is infeasible.


def kinematic_infeasibility(state: SimulatorState, max_accel: float = MAX_ACCEL,
                            max_curvature: float = MAX_CURVATURE,
                            dt: float = TIMESTEP_SECONDS) -> MetricResult:
  """Flags objects whose simulated step ``t - 1 -> t`` a bicycle could not drive.

  Runs the bicycle model's inverse on the simulated trajectory between the previous
  and the current step (``t = state.timestep``).

  Args:
    state: batch shape ``(...)``.
    max_accel: acceleration limit in m/s^2 (exclusive).
    max_curvature: curvature limit in 1/m (exclusive).
    dt: step length in seconds.

  Returns:
    ``MetricResult`` ``(..., num_objects)``: 1.0 where ``|a| > max_accel`` or
    ``|k| > max_curvature``, else 0.0; valid where the object is valid at both steps
    (never at ``t = 0``).
  """
  previous, current, valid = consecutive_steps(state.sim_trajectory, state.timestep - 1)
  accel, curvature = bicycle_inverse(previous, current, valid, dt)
  infeasible = (jnp.abs(accel) > max_accel) | (jnp.abs(curvature) > max_curvature)
  return MetricResult.create(infeasible[..., 0].astype(jnp.float32), valid[..., 0])
