"""The sim-agent interface: scripted actors that propose next poses for all objects.

A sim agent proposes a :class:`TrajectoryUpdate` ``(..., N, 1)`` for every object; which
objects it actually drives is a separate per-object mask (:meth:`SimAgent.controlled_mask`),
so agents and policies combine with ``merge_updates`` and one call to
``apply_trajectory_update`` (see :func:`merge_agent_updates`).
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from spacer_jax.sim.datatypes import SimulatorState, TrajectoryUpdate, merge_updates


class AgentControl(str, enum.Enum):
  """Which objects a sim agent drives (always restricted to real objects)."""

  NON_CONTROLLED = 'non_controlled'  # Objects the policy does not control.
  NON_SDC = 'non_sdc'  # Every object except the self-driving car.
  ALL = 'all'  # Every object.


def controlled_mask(state: SimulatorState, control: AgentControl | str) -> jax.Array:
  """Objects selected by ``control``, bool ``(..., num_objects)``.

  Padded slots (``object_metadata.is_valid`` False) are never selected.
  """
  meta = state.object_metadata
  control = AgentControl(control)
  if control is AgentControl.NON_CONTROLLED:
    mask = ~meta.is_controlled
  elif control is AgentControl.NON_SDC:
    mask = ~meta.is_sdc
  else:
    mask = jnp.ones_like(meta.is_valid)
  return mask & meta.is_valid


@dataclasses.dataclass(frozen=True)
class SimAgent(abc.ABC):
  """A scripted actor. Frozen configuration only; all methods are pure and jittable.

  Attributes:
    control: which objects the agent drives (:class:`AgentControl`).
  """

  control: AgentControl = AgentControl.NON_CONTROLLED

  def __post_init__(self):
    object.__setattr__(self, 'control', AgentControl(self.control))

  def controlled_mask(self, state: SimulatorState) -> jax.Array:
    """Objects this agent drives, bool ``(..., num_objects)``."""
    return controlled_mask(state, self.control)

  @abc.abstractmethod
  def select_update(self, state: SimulatorState, rng: jax.Array | None = None
                    ) -> TrajectoryUpdate:
    """Next pose of EVERY object at ``state.timestep + 1``.

    Args:
      state: batch shape ``(...)``.
      rng: PRNG key (unused by deterministic agents).

    Returns:
      ``TrajectoryUpdate`` ``(..., num_objects, 1)``.
    """

  def __call__(self, state: SimulatorState, rng: jax.Array | None = None
               ) -> TrajectoryUpdate:
    """Alias of :meth:`select_update`, so an agent is a rollout actor."""
    return self.select_update(state, rng)


def merge_agent_updates(state: SimulatorState, update: TrajectoryUpdate,
                        is_controlled: jax.Array, agents: Sequence[SimAgent],
                        rng: jax.Array | None = None
                        ) -> tuple[TrajectoryUpdate, jax.Array]:
  """Overlays sim agents on a policy's update.

  Each agent's proposal replaces ``update`` on the objects it drives that the policy
  does not (the policy keeps its own objects; among agents, later ones win).

  Args:
    state: batch shape ``(...)``.
    update: the policy's ``TrajectoryUpdate`` ``(..., N, 1)``.
    is_controlled: bool ``(..., N)``, the policy's objects.
    agents: sim agents, applied in order.
    rng: PRNG key, folded with the agent's index.

  Returns:
    ``(merged_update, mask)``: pass ``mask`` (policy or agent driven, ``(..., N)``) as
    ``is_controlled`` to ``apply_trajectory_update``; the rest replay the log.
  """
  policy = jnp.asarray(is_controlled, bool)
  mask = policy
  for i, agent in enumerate(agents):
    key = None if rng is None else jax.random.fold_in(rng, i)
    take = agent.controlled_mask(state) & ~policy
    update = merge_updates(update, agent.select_update(state, key), take)
    mask = mask | take
  return update, mask
