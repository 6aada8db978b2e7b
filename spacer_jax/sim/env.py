"""The stateless multi-agent environment: reset, step, metrics, reward, observe.

Every method is a pure function of its arguments (the environment object only holds
static configuration), so all of them can be jitted and vmapped over scenarios. The
state is a :class:`SimulatorState`; batch dimensions lead every field.

Metrics and reward share one computation: :meth:`MultiAgentEnvironment.metrics`
evaluates each needed metric once, and :meth:`reward` accepts those results instead of
recomputing them (the expensive road-edge query then runs once per step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from spacer_jax.sim import observation
from spacer_jax.sim.config import ControlledObjects, EnvConfig
from spacer_jax.sim.datatypes import Action, SimulatorState, TrajectoryUpdate
from spacer_jax.sim.dynamics.base import DynamicsModel, apply_trajectory_update
from spacer_jax.sim.metrics import registry, road_edges
from spacer_jax.sim.metrics.base import MetricResult


class MultiAgentEnvironment:
  """Waymax-style environment over a dynamics model and an :class:`EnvConfig`."""

  def __init__(self, dynamics_model: DynamicsModel, config: EnvConfig = EnvConfig()):
    self.dynamics = dynamics_model
    self.config = config
    for name in config.metrics_to_compute:
      registry.get_metric(name)  # Fail at construction on an unknown metric name.

  # -- episode ---------------------------------------------------------------------

  def reset(self, state: SimulatorState, controlled: jax.Array | None = None
            ) -> SimulatorState:
    """Starts an episode at ``timestep = init_steps - 1``.

    The simulated trajectory holds the log up to that step and -1/invalid after it;
    ``object_metadata.is_controlled`` is set from the config (or from ``controlled``,
    ``(..., num_objects)`` bool, when given); the road-edge index is built once.
    """
    t0 = self.config.init_steps - 1
    num_t = state.log_trajectory.num_timesteps
    if t0 >= num_t:
      raise ValueError(f'init_steps={self.config.init_steps} exceeds the log length '
                       f'{num_t}.')
    keep = jnp.arange(num_t) <= t0
    log = state.log_trajectory
    sim = jax.tree_util.tree_map(
        lambda x: jnp.where(keep, x, jnp.asarray(-1, x.dtype) if x.dtype != bool else False),
        log)
    timestep = jnp.full(state.shape, t0, jnp.int32)
    state = state.replace(sim_trajectory=sim, timestep=timestep)
    if controlled is None:
      controlled = self._controlled_mask(state)
    metadata = state.object_metadata.replace(
        is_controlled=jnp.asarray(controlled, bool) & state.object_metadata.is_valid)
    index = None
    if self.config.build_road_edge_index:
      index = road_edges.build_road_edge_index(state.roadgraph_points,
                                               self.config.road_edge_index)
    return state.replace(object_metadata=metadata, road_edge_index=index)

  def _controlled_mask(self, state: SimulatorState) -> jax.Array:
    meta = state.object_metadata
    mode = self.config.controlled_object
    if mode is ControlledObjects.SDC:
      return meta.is_sdc
    if mode is ControlledObjects.MODELED:
      return meta.is_modeled | meta.is_sdc
    return state.current_log_trajectory.valid[..., 0] & meta.is_valid

  def step(self, state: SimulatorState, action: Action) -> SimulatorState:
    """Advances one step: controlled objects follow ``action``, the rest the log."""
    update = self.dynamics.compute_update(action, state.current_sim_trajectory)
    return self.step_with_update(state, update)

  def step_with_update(self, state: SimulatorState, update: TrajectoryUpdate
                       ) -> SimulatorState:
    """Advances one step from next poses given directly (sim agents, token policies)."""
    trajectory = apply_trajectory_update(
        state, update, state.object_metadata.is_controlled,
        use_fallback=self.config.use_fallback)
    return state.replace(sim_trajectory=trajectory, timestep=state.timestep + 1)

  # -- evaluation ------------------------------------------------------------------

  def metrics(self, state: SimulatorState) -> dict[str, MetricResult]:
    """Every configured and rewarded metric at ``state.timestep``, each computed once."""
    return registry.run_metrics(state, self.config.metrics_to_compute)

  def reward(self, state: SimulatorState,
             metrics: dict[str, MetricResult] | None = None) -> jax.Array:
    """Per-object reward ``(..., num_objects)`` of the state reached.

    Weighted sum of the configured metric values (invalid entries count 0), times the
    controlled mask. Pass ``metrics`` from :meth:`metrics` to avoid recomputing them.
    """
    if metrics is None:
      metrics = registry.run_metrics(state, tuple(self.config.rewards))
    total = jnp.zeros(state.object_metadata.shape, jnp.float32)
    for name, weight in self.config.rewards.items():
      result = metrics[name]
      total = total + weight * jnp.where(result.valid, result.value, 0.0)
    return total * state.object_metadata.is_controlled

  def observe(self, state: SimulatorState,
              config: observation.ObservationConfig = observation.ObservationConfig()
              ) -> observation.Observation:
    """Per-object, ego-frame observation (see :mod:`spacer_jax.sim.observation`)."""
    return observation.observe(state, config)

  def expert_action(self, state: SimulatorState) -> Action:
    """Actions that reproduce the log from ``state.timestep`` (the dynamics' inverse)."""
    return self.dynamics.inverse(state.log_trajectory, state.object_metadata,
                                 state.timestep)

  def done(self, state: SimulatorState) -> jax.Array:
    """Episode end, ``(...)``."""
    return state.is_done


__all__ = ['MultiAgentEnvironment', 'EnvConfig', 'ControlledObjects']
