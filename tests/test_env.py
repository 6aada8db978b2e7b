"""Environment: reset/step/metrics/reward/observe semantics, rollouts, retrace guard."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.sim import agents, dynamics
from spacer_jax.sim.config import EnvConfig
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.sim.metrics import registry
from spacer_jax.sim.metrics.base import MetricResult
from spacer_jax.sim.rollout import rollout


def _batch(tree, shape):
  return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, shape + x.shape), tree)


def _env(model='state', **kwargs):
  return MultiAgentEnvironment(dynamics.get_dynamics_model(model), EnvConfig(**kwargs))


def test_reset_starts_at_init_steps(two_lane_state):
  env = _env()
  state = env.reset(two_lane_state)
  assert int(state.timestep) == 10
  sim, log = state.sim_trajectory, state.log_trajectory
  np.testing.assert_array_equal(sim.x[:, :11], log.x[:, :11])
  assert not bool(jnp.any(sim.valid[:, 11:]))
  assert float(sim.x[0, 50]) == -1.0
  # Controlled: every object valid at the current step (3 real cars).
  np.testing.assert_array_equal(state.object_metadata.is_controlled,
                                [1, 1, 1, 0, 0, 0, 0, 0])
  assert state.road_edge_index is not None


@pytest.mark.parametrize('mode,expected', [
    ('sdc', [1, 0, 0]), ('modeled', [1, 1, 0]), ('valid', [1, 1, 1])])
def test_controlled_object_modes(two_lane_state, mode, expected):
  state = _env(controlled_object=mode).reset(two_lane_state)
  np.testing.assert_array_equal(state.object_metadata.is_controlled[:3], expected)


def test_unknown_metric_fails_at_construction():
  with pytest.raises(KeyError, match='no_such_metric'):
    _env(metrics=('no_such_metric',))


@pytest.mark.parametrize('jit', [False, True])
@pytest.mark.parametrize('batch', [(), (2,), (2, 1)])
def test_expert_actions_replay_the_log(two_lane_state, jit, batch):
  env = _env('delta_global')
  state = env.reset(_batch(two_lane_state, batch))
  def step(s):
    return env.step(s, env.expert_action(s))
  step = jax.jit(step) if jit else step
  for _ in range(5):
    state = step(state)
  chex.assert_shape(state.timestep, batch)
  t = 15
  log, sim = state.log_trajectory, state.sim_trajectory
  np.testing.assert_allclose(sim.x[..., :3, t], log.x[..., :3, t], atol=1e-4)
  np.testing.assert_allclose(sim.y[..., :3, t], log.y[..., :3, t], atol=1e-4)
  np.testing.assert_array_equal(sim.valid[..., t], log.valid[..., t])
  np.testing.assert_array_equal(sim.length[..., t], log.length[..., t])


def test_full_rollout_with_log_replay_agent(two_lane_state):
  env = _env()
  state = env.reset(two_lane_state)
  agent = agents.get_sim_agent('log_replay')
  out = jax.jit(lambda s: rollout(env, s, agent.select_update, jax.random.PRNGKey(0)))(
      state)
  final = out.final_state
  assert int(final.timestep) == 90 and bool(final.is_done)
  log, sim = final.log_trajectory, final.sim_trajectory
  np.testing.assert_allclose(jnp.where(log.valid, sim.x, 0), jnp.where(log.valid, log.x, 0),
                             atol=1e-5)
  np.testing.assert_array_equal(sim.valid, log.valid)
  chex.assert_shape(out.reward, (80, 8))
  for name in ('overlap', 'offroad', 'log_divergence'):
    chex.assert_shape(out.metrics[name].value, (80, 8))
  assert float(jnp.abs(out.reward).sum()) == 0.0  # no collisions, all on the road
  assert float(jnp.max(out.metrics['log_divergence'].value)) < 1e-4
  # Car 2 leaves the log at step 60: it is invalid from then on.
  assert not bool(sim.valid[2, 60])


def test_reward_is_weighted_metric_sum_on_controlled(two_lane_state):
  env = _env(rewards={'overlap': -2.0, 'log_divergence': -0.5})
  state = env.reset(two_lane_state)
  # Drive car 1 into car 0's box: same pose at the next step.
  upd = agents.get_sim_agent('log_replay').select_update(state, jax.random.PRNGKey(0))
  upd = upd.replace(x=upd.x.at[1].set(upd.x[0]), y=upd.y.at[1].set(upd.y[0]))
  state = env.step_with_update(state, upd)
  metrics = env.metrics(state)
  reward = env.reward(state, metrics)
  np.testing.assert_allclose(reward, env.reward(state))
  div = metrics['log_divergence'].value
  expected = (-2.0 * metrics['overlap'].value - 0.5 * div) * state.object_metadata.is_controlled
  np.testing.assert_allclose(reward, expected, atol=1e-6)
  assert float(metrics['overlap'].value[0]) == 1.0 and float(metrics['overlap'].value[1]) == 1.0
  assert float(reward[1]) < -2.0


def test_each_metric_computed_once_per_step(two_lane_state):
  calls = []
  def counting(state):
    calls.append(1)
    n = state.object_metadata.num_objects
    return MetricResult.create(jnp.zeros(state.shape + (n,)),
                               jnp.ones(state.shape + (n,), bool))
  registry.register_metric('test_counting', counting, overwrite=True)
  env = _env(metrics=('test_counting',), rewards={'test_counting': 1.0})
  state = env.reset(two_lane_state)
  agent = agents.get_sim_agent('constant_velocity')
  jax.jit(lambda s: rollout(env, s, agent.select_update, jax.random.PRNGKey(0),
                            num_steps=3))(state)
  assert len(calls) == 1  # traced once inside the scan body, shared by reward


def test_step_does_not_retrace(two_lane_state):
  env = _env('bicycle')
  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(state, action):
    return env.step(state, action)
  state = env.reset(two_lane_state)
  for i in range(3):
    action = env.expert_action(state)
    action = action.replace(data=action.data + 0.01 * i)
    state = step(state, action)
  assert int(state.timestep) == 13


def test_observe_shapes_and_frames(two_lane_state):
  env = _env()
  state = env.reset(two_lane_state)
  obs = env.observe(state)
  chex.assert_shape(obs.objects_xy, (8, 8, 1, 2))
  chex.assert_shape(obs.roadgraph_xy, (8, 200, 2))
  chex.assert_shape(obs.traffic_light_state, (8, 16))
  # Each ego sits at its own origin, and car 1 is ahead-left of car 0.
  np.testing.assert_allclose(obs.objects_xy[0, 0, 0], [0.0, 0.0], atol=1e-5)
  rel = np.asarray(obs.objects_xy[0, 1, 0])
  assert rel[0] > 0 and rel[1] > 0
  assert bool(obs.ego_valid[0]) and not bool(obs.ego_valid[5])


def test_registry_names_every_simulator_metric(two_lane_state):
  names = ('overlap', 'offroad', 'log_divergence', 'kinematic_infeasibility',
           'distance_to_nearest_object', 'time_to_collision', 'distance_to_road_edge',
           'red_light_violation', 'wrong_way', 'progression', 'off_route')
  assert set(names) <= set(registry.registered_metrics())
  env = _env(metrics=names)
  state = env.reset(two_lane_state)
  state = env.step_with_update(
      state, agents.get_sim_agent('log_replay').select_update(state, jax.random.PRNGKey(0)))
  results = jax.jit(env.metrics)(state)
  for name in names:
    chex.assert_shape(results[name].value, (8,))
  # Logged motion is feasible and collision-free; the cars are valid.
  assert not bool(jnp.any(results['kinematic_infeasibility'].value[:3] > 0))
  assert bool(jnp.all(results['kinematic_infeasibility'].valid[:3]))
  assert not bool(jnp.any(results['overlap'].value > 0))
