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
from spacer_jax.sim.registry import Registry

_MODELS: Registry[type[DynamicsModel]] = Registry('dynamics model')


def register_dynamics_model(name: str, model: type[DynamicsModel],
                            overwrite: bool = False) -> type[DynamicsModel]:
  """Makes ``get_dynamics_model(name)`` build ``model`` (a :class:`DynamicsModel`)."""
  return _MODELS.register(name, model, overwrite)


def get_dynamics_model(name: str, **kwargs: Any) -> DynamicsModel:
  """Builds a registered dynamics model by name ('bicycle', 'delta_global',
  'delta_local', 'state' and any added with :func:`register_dynamics_model`).

  Keyword arguments go to the model's constructor (e.g. ``normalize_actions=True``).

  Raises:
    ValueError: on an unknown name.
  """
  return _MODELS.get(name)(**kwargs)


for _name, _model in (('bicycle', InvertibleBicycleModel), ('delta_global', DeltaGlobal),
                      ('delta_local', DeltaLocal), ('state', StateDynamics)):
  register_dynamics_model(_name, _model)


__all__ = [
    'DeltaGlobal', 'DeltaLocal', 'DynamicsModel', 'InvertibleBicycleModel', 'StateDynamics',
    'apply_trajectory_update', 'bicycle_inverse', 'consecutive_steps',
    'constant_velocity_update', 'get_dynamics_model', 'register_dynamics_model',
]
