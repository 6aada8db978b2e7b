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

_AGENTS: dict[str, type[SimAgent]] = {
    'log_replay': LogReplayAgent,
    'constant_velocity': ConstantVelocityAgent,
    'idm': IDMAgent,
}


def get_sim_agent(name: str, **kwargs: Any) -> SimAgent:
  """Builds a sim agent by name: 'log_replay', 'constant_velocity', 'idm'.

  Keyword arguments go to the agent's constructor (e.g. ``desired_speed=20.0``).

  Raises:
    ValueError: on an unknown name.
  """
  if name not in _AGENTS:
    raise ValueError(f'Unknown sim agent {name!r}; expected one of {sorted(_AGENTS)}.')
  return _AGENTS[name](**kwargs)

__all__ = [
    'AgentControl', 'ConstantVelocityAgent', 'IDMAgent', 'LogReplayAgent', 'SimAgent',
    'controlled_mask', 'get_sim_agent', 'merge_agent_updates',
]
