"""Dynamics models: actions -> next poses, and their inverses (expert actions)."""

from __future__ import annotations

from typing import Any

from spacer_jax.sim.dynamics.base import (
    DynamicsModel,
    apply_trajectory_update,
    consecutive_steps,
    constant_velocity_update,
)
from spacer_jax.sim.dynamics.bicycle import InvertibleBicycleModel, bicycle_inverse
from spacer_jax.sim.dynamics.delta import DeltaGlobal, DeltaLocal
from spacer_jax.sim.dynamics.state import StateDynamics

_MODELS: dict[str, type[DynamicsModel]] = {
    'bicycle': InvertibleBicycleModel,
    'delta_global': DeltaGlobal,
    'delta_local': DeltaLocal,
    'state': StateDynamics,
}


def get_dynamics_model(name: str, **kwargs: Any) -> DynamicsModel:
  """Builds a dynamics model by name: 'bicycle', 'delta_global', 'delta_local', 'state'.

  Keyword arguments go to the model's constructor (e.g. ``normalize_actions=True``).

  Raises:
    ValueError: on an unknown name.
  """
  if name not in _MODELS:
    raise ValueError(f'Unknown dynamics model {name!r}; expected one of {sorted(_MODELS)}.')
  return _MODELS[name](**kwargs)


__all__ = [
    'DeltaGlobal', 'DeltaLocal', 'DynamicsModel', 'InvertibleBicycleModel', 'StateDynamics',
    'apply_trajectory_update', 'bicycle_inverse', 'consecutive_steps',
    'constant_velocity_update', 'get_dynamics_model',
]
