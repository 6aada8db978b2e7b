"""The ego-planner interface and the helpers every planner shares."""

from __future__ import annotations

import abc
from typing import Any

import jax
import numpy as np

from spacer_jax.eval.sim_agents import Motion
from spacer_jax.sim.datatypes import SimulatorState


class EgoPlanner(abc.ABC):
  """Drives the SDC in closed loop. Subclasses are frozen dataclasses with a ``name``
  field; all methods are pure and jittable (batch dims ``(...)`` lead every array)."""

  name: str

  @abc.abstractmethod
  def init(self, params: Any, state: SimulatorState, rng: jax.Array) -> Any:
    """The planner's carry for an episode; ``state`` is already reset."""

  @abc.abstractmethod
  def plan(self, params: Any, carry: Any, state: SimulatorState, rng: jax.Array
           ) -> tuple[Any, Any]:
    """``(carry, Motion)``: the SDC's next ``S`` sub-steps, one row.

    The ``Motion`` has ``poses (..., 1, S, 3)`` world (x, y, yaw) in m / rad,
    ``velocities (..., 1, S, 2)`` m/s and ``valid (..., 1)``.
    """


def make_motion(poses: jax.Array, velocities: jax.Array, valid: jax.Array) -> Motion:
  """A ``spacer_jax.eval.sim_agents.Motion`` of the given fields."""
  return Motion(poses=poses, velocities=velocities, valid=valid)


def check_positive(obj: Any, names: tuple[str, ...]) -> None:
  """Raises ValueError unless each named field of ``obj`` is positive (or None)."""
  for name in names:
    value = getattr(obj, name)
    if value is not None and value <= 0:
      raise ValueError(f'{type(obj).__name__}.{name} must be positive, got {value}.')


def interpolate_geometric(alpha: float, low: float, base: float, high: float) -> float:
  """Geometric interpolation: ``low`` at alpha = -1, ``base`` at 0, ``high`` at 1."""
  end = high if alpha >= 0 else low
  return float(base * (end / base) ** abs(alpha))


def parameter_sweep(endpoints: dict[str, tuple[float, float, float]], n: int,
                    what: str) -> list[dict[str, float]]:
  """``n`` parameter sets from cautious to assertive: ``alpha`` over ``linspace(-1, 1,
  n)`` (0 for n = 1) moves each entry of ``endpoints`` (``(alpha -1, 0, +1)`` values)
  geometrically; a planner family's members. ``what`` names the family in errors."""
  if n < 1:
    raise ValueError(f'{what}: n must be >= 1, got {n}.')
  alphas = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
  return [{k: interpolate_geometric(alpha, *v) for k, v in endpoints.items()}
          for alpha in alphas]
