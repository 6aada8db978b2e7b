"""Scripted sim agents: log replay, constant velocity, IDM along the logged path."""

from __future__ import annotations

from typing import Any

from spacer_jax.sim.agents.base import (
    AgentControl,
    SimAgent,
    controlled_mask,
    merge_agent_updates,
)
from spacer_jax.sim.agents.idm import IDMAgent
from spacer_jax.sim.agents.simple import ConstantVelocityAgent, LogReplayAgent
from spacer_jax.sim.registry import Registry

_AGENTS: Registry[type[SimAgent]] = Registry('sim agent')


def register_sim_agent(name: str, agent: type[SimAgent],
                       overwrite: bool = False) -> type[SimAgent]:
  """Makes ``get_sim_agent(name)`` build ``agent`` (a :class:`SimAgent`)."""
  return _AGENTS.register(name, agent, overwrite)


def get_sim_agent(name: str, **kwargs: Any) -> SimAgent:
  """Builds a registered sim agent by name ('log_replay', 'constant_velocity', 'idm'
  and any added with :func:`register_sim_agent`).

  Keyword arguments go to the agent's constructor (e.g. ``desired_speed=20.0``).

  Raises:
    ValueError: on an unknown name.
  """
  return _AGENTS.get(name)(**kwargs)


for _name, _agent in (('log_replay', LogReplayAgent),
                      ('constant_velocity', ConstantVelocityAgent), ('idm', IDMAgent)):
  register_sim_agent(_name, _agent)

__all__ = [
    'AgentControl', 'ConstantVelocityAgent', 'IDMAgent', 'LogReplayAgent', 'SimAgent',
    'controlled_mask', 'get_sim_agent', 'merge_agent_updates', 'register_sim_agent',
]
