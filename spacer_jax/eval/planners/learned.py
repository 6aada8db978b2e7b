"""Any ``SimAgentPolicy`` (e.g. a learned self-play policy) as the ego planner."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.eval.planners.base import EgoPlanner, make_motion
from spacer_jax.eval.planners.scene import sdc_index, take_object
from spacer_jax.sim.datatypes import SimulatorState


@struct.dataclass
class PolicyEgoCarry:
  """The wrapped policy's carry, plus what its ``observe`` needs about the last step.

  Attributes:
    policy: the policy's carry.
    prev_trajectory: the simulated trajectory ``(..., N, T)`` when the last plan was made.
    prev_timestep: its timestep ``(...)``.
    has_prev: scalar bool, False before the first plan.
  """

  policy: Any
  prev_trajectory: Any
  prev_timestep: jax.Array
  has_prev: jax.Array


@dataclasses.dataclass(frozen=True)
class PolicyEgo(EgoPlanner):
  """Drives the SDC with any ``SimAgentPolicy`` (e.g. a learned self-play policy).

  The policy proposes every object's motion from its own carry; only the SDC's row is
  returned. Before proposing, the policy observes the step just executed (the state
  at the last plan and the current one), as the runner does for sim agents.
  """

  policy: Any
  name: str = ''

  def __post_init__(self):
    for method in ('init', 'propose', 'observe'):
      if not callable(getattr(self.policy, method, None)):
        raise TypeError(f'PolicyEgo: {self.policy!r} has no {method}() (expected a '
                        'SimAgentPolicy).')
    if not self.name:
      object.__setattr__(self, 'name', f"ego_{getattr(self.policy, 'name', 'policy')}")

  def init(self, params: Any, state: SimulatorState, rng: jax.Array) -> PolicyEgoCarry:
    return PolicyEgoCarry(policy=self.policy.init(params, state, rng),
                          prev_trajectory=state.sim_trajectory,
                          prev_timestep=state.timestep, has_prev=jnp.asarray(False))

  def plan(self, params: Any, carry: PolicyEgoCarry, state: SimulatorState, rng: jax.Array
           ) -> tuple[PolicyEgoCarry, Any]:
    prev = state.replace(sim_trajectory=carry.prev_trajectory, timestep=carry.prev_timestep)
    observed = self.policy.observe(params, carry.policy, prev, state)
    policy_carry = jax.tree_util.tree_map(lambda a, b: jnp.where(carry.has_prev, a, b),
                                          observed, carry.policy)
    motion = self.policy.propose(params, policy_carry, state, rng)
    index = sdc_index(state)
    row = make_motion(take_object(motion.poses, index, -3),
                      take_object(motion.velocities, index, -3),
                      # valid is (..., N) or, per sub-step, (..., N, S).
                      take_object(motion.valid, index,
                                  -1 if motion.valid.ndim == motion.poses.ndim - 2 else -2))
    new_carry = PolicyEgoCarry(policy=policy_carry, prev_trajectory=state.sim_trajectory,
                               prev_timestep=state.timestep, has_prev=jnp.asarray(True))
    return new_carry, row
