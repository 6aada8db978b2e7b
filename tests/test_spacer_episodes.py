"""Self-play episodes are WOSAC episodes: everyone valid at the current step stays in the
world for all decisions, events count once, the log's own off-road is not punished.

One hand-built 91-step scene (a straight road with edges at y = +-3.5 m): a moving car,
a car parked where its log ends (so at its goal from the start) and a pedestrian
standing on the sidewalk at y = 6 m (off road in the log).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import spacer as spacer_configs
from spacer_jax.sim import builders
from spacer_jax.spacer import factory, rewards
from spacer_jax.spacer import train as train_lib
from spacer_jax.tokens.builder import primitive_vocabulary

MOVING, PARKED, PEDESTRIAN = 0, 1, 2


def _scene():
  t = 91
  s = np.arange(t) * 0.1
  x = np.stack([5.0 + 8.0 * s, 40.0 + 0.0 * s, 120.0 + 0.0 * s])
  y = np.stack([-1.75 * np.ones(t), 1.75 * np.ones(t), 6.0 * np.ones(t)])
  traj = builders.trajectory_from_arrays(
      x, y, np.zeros((3, t)), np.ones((3, t), bool), length=np.array([4.5, 4.6, 0.8]),
      width=np.array([1.9, 2.0, 0.8]), num_objects=8)
  meta = builders.metadata_from_arrays(np.array([1, 1, 2]), num_objects=8, sdc_index=0)
  road = [builders.Polyline(np.array([[-20.0, -3.5], [200.0, -3.5]]), 15, 1),
          builders.Polyline(np.array([[200.0, 3.5], [-20.0, 3.5]]), 15, 2),
          builders.Polyline(np.array([[-20.0, -1.75], [200.0, -1.75]]), 2, 3),
          builders.Polyline(np.array([[-20.0, 1.75], [200.0, 1.75]]), 2, 4)]
  rg = builders.roadgraph_from_polylines(road, num_points=2048)
  return builders.stack_states([builders.make_state(traj, meta, rg)])


def _selfplay(**reward):
  config = spacer_configs.get_config('tiny')
  config.env.policy_steps = 40
  # Every object within reach of every observer, so the partner count shows who exists.
  config.obs.partner_radius = 1000.0
  for k, v in reward.items():
    config.reward[k] = v
  return factory.make_selfplay(config, primitive_vocabulary(config.tokens.num_tokens))


def _episode(selfplay, seed=0):
  worlds = jax.jit(selfplay.prepare)(_scene())
  params = selfplay.policy.init(jax.random.key(1), jax.jit(
      lambda w: selfplay.observe(w, w.state, rewards.AgentStatus.create(
          w.state.object_metadata.is_controlled), jnp.ones((1, 8), bool)))(worlds))
  episode = jax.jit(selfplay.rollout_per_world)(params, worlds,
                                                jax.random.split(jax.random.key(seed), 1))
  return worlds, jax.device_get(episode)


@pytest.fixture(scope='module')
def default_episode():
  return _episode(_selfplay())


def test_defaults_are_wosac_episodes():
  config = rewards.RewardConfig()
  assert (config.after_goal, config.after_collision, config.after_offroad) == ('continue',) * 3
  assert config.exempt_log_offroad
  spacer = spacer_configs.get_config('cpu').reward
  assert (spacer.after_goal, spacer.after_collision, spacer.after_offroad,
          spacer.exempt_log_offroad) == ('continue', 'continue', 'continue', True)


def test_parked_car_at_its_goal_stays_in_the_world_and_in_its_neighbours_view(
    default_episode):
  _, ep = default_episode
  assert ep.acted.shape == (40, 1, 8)
  # It acts at all 40 decisions and its simulated box exists at every step.
  assert ep.acted[:, 0, PARKED].all() and ep.acted[:, 0, MOVING].all()
  assert np.asarray(ep.final_state.sim_trajectory.valid[0, PARKED, 10:]).all()
  # The moving car sees both other objects at every decision (radius 1 km).
  assert (ep.obs.partner_mask[:, 0, MOVING].sum(-1) == 2).all()
  # At its goal from the start: no free goal reward, and it is not in the goal rate.
  assert bool(ep.status.started_at_goal[0, PARKED])
  assert not ep.goal[:, 0, PARKED].any()
  metrics = train_lib.episode_metrics(ep)
  assert float(metrics['agents']) == 3.0


def test_the_removal_rule_still_takes_agents_out_when_chosen():
  # The old default, kept for comparison: an off-road event removes the agent.
  _, ep = _episode(_selfplay(after_offroad='remove', exempt_log_offroad=False))
  assert ep.offroad[0, 0, PEDESTRIAN] and ep.done[0, 0, PEDESTRIAN]
  assert not ep.acted[1:, 0, PEDESTRIAN].any()
  assert not np.asarray(ep.final_state.sim_trajectory.valid[0, PEDESTRIAN, 13:]).any()


def test_pedestrian_on_a_logged_sidewalk_gets_no_offroad_penalty(default_episode):
  worlds, ep = default_episode
  assert bool(worlds.log_offroad[0, PEDESTRIAN])
  assert not bool(worlds.log_offroad[0, MOVING]) and not bool(worlds.log_offroad[0, PARKED])
  assert bool(ep.offroad_exempt[0, PEDESTRIAN])
  assert not ep.offroad[:, 0, PEDESTRIAN].any()
  assert ep.acted[:, 0, PEDESTRIAN].all()
  # Without the exemption the same pedestrian is penalised at its first step, once.
  _, punished = _episode(_selfplay(exempt_log_offroad=False))
  assert punished.offroad[0, 0, PEDESTRIAN] and punished.offroad[:, 0, PEDESTRIAN].sum() == 1
  assert punished.task_reward[0, 0, PEDESTRIAN] <= -0.75
  assert punished.acted[:, 0, PEDESTRIAN].all()


def test_events_count_once_and_the_agent_keeps_acting():
  status = rewards.AgentStatus.create(jnp.array([True, True]),
                                      at_goal_now=jnp.array([False, True]))
  config = rewards.RewardConfig(goal_after_infraction=True)  # (default False: below)
  flags = [(True, True, False), (True, True, True), (False, False, True)]
  rewards_seen = []
  for col, off, goal in flags:
    status, ev = rewards.update_status(status, jnp.array([col, False]),
                                       jnp.array([off, False]), jnp.array([goal, True]),
                                       config)
    rewards_seen.append(np.asarray(rewards.step_reward(ev, jnp.zeros(2), config, 0.0)))
    assert ev.acted.all() and not ev.done.any()
  # Agent 0: both penalties at the first step only, the goal once; agent 1 started at
  # its goal and earns nothing for standing there.
  np.testing.assert_allclose(np.stack(rewards_seen), [[-1.5, 0.0], [1.0, 0.0], [0.0, 0.0]])
  assert status.alive.all() and bool(status.goal_reached[1])


def test_an_infraction_forfeits_the_goal_by_default():
  # Three agents reach their goals at step 1: one collided at step 0, one collides at
  # step 1 itself, one drove cleanly. Only the clean one earns the goal; all keep acting.
  status = rewards.AgentStatus.create(jnp.ones(3, bool))
  config = rewards.RewardConfig()
  assert not config.goal_after_infraction
  steps = [(jnp.array([True, False, False]), jnp.zeros(3, bool)),
           (jnp.array([True, True, False]), jnp.ones(3, bool))]
  seen = []
  for collided, reached in steps:
    status, ev = rewards.update_status(status, collided, jnp.zeros(3, bool), reached, config)
    seen.append(np.asarray(rewards.step_reward(ev, jnp.zeros(3), config, 0.0)))
    assert ev.acted.all()
  np.testing.assert_allclose(np.stack(seen), [[-0.75, 0.0, 0.0], [0.0, -0.75, 1.0]])
  assert np.asarray(status.goal_reached).tolist() == [False, False, True]


def test_feasible_actions_restrict_acting_and_the_losses():
  """With obs.feasible_actions every sampled token lies in the agent's feasible set at
  that step, the policy puts no mass outside it, and the PPO loss stays finite."""
  from spacer_jax.spacer import losses
  selfplay = _selfplay()
  assert selfplay.obs_config.feasible_actions
  worlds, ep = _episode(selfplay, seed=3)
  feasible = np.asarray(ep.obs.feasible)  # (T, W, N, K)
  assert feasible.shape == (40, 1, 8, 32)
  acted = np.asarray(ep.acted)
  taken = np.take_along_axis(feasible, np.asarray(ep.actions)[..., None], -1)[..., 0]
  assert taken[acted].all()
  assert not feasible[acted].all()  # The bound removes tokens somewhere.
  params = selfplay.policy.init(jax.random.key(1), jax.tree.map(lambda a: a[0], ep.obs))
  logits, _ = selfplay.policy.apply(params, jax.tree.map(lambda a: a[5], ep.obs))
  p = np.asarray(jax.nn.softmax(logits, -1))
  assert np.all(p[~feasible[5]] == 0.0)
  ent = losses.entropy(logits, jnp.asarray(acted[5]))
  kl = losses.categorical_kl(logits, jnp.where(feasible[5], 0.0, -jnp.inf),
                             jnp.asarray(acted[5]))
  assert np.isfinite(np.asarray(ent)).all() and np.isfinite(np.asarray(kl)).all()
  # Without the flag the observation carries no mask and every token is allowed.
  plain = factory.make_selfplay(_plain_config(), primitive_vocabulary(32))
  _, ep_plain = _episode(plain, seed=3)
  assert ep_plain.obs.feasible is None


def _plain_config():
  config = spacer_configs.get_config('tiny')
  config.env.policy_steps = 40
  config.obs.feasible_actions = False
  return config


def test_bc_expert_episode_hides_the_goals_ppo_hides():
  # BC learns with PPO's goal dropout: a hidden goal's features (ego columns 3-5: goal
  # x, y, visible) are zero at every step, a shown one's are not.
  from spacer_jax.spacer import bc
  selfplay = _selfplay()
  worlds = jax.jit(selfplay.prepare)(_scene())
  visible = jnp.zeros((1, 8), bool).at[0, MOVING].set(True)
  obs, tokens, valid = jax.jit(lambda w, v: bc.expert_episode(selfplay, w, v))(worlds, visible)
  goal = np.asarray(obs.ego)[:, 0, :, 3:6]  # (T, N, 3)
  assert np.all(goal[:, PARKED] == 0.0) and np.all(goal[:, PEDESTRIAN] == 0.0)
  assert np.all(goal[:, MOVING, 2] == 1.0) and np.any(goal[:, MOVING, :2] != 0.0)
  shown = jax.jit(lambda w: bc.expert_episode(selfplay, w))(worlds)[0]
  assert np.all(np.asarray(shown.ego)[:, 0, PARKED, 5] == 1.0)
  assert np.asarray(valid)[:, 0, MOVING].all() and tokens.shape == valid.shape


def test_goal_progress_reward_sums_to_the_share_of_the_way_covered(default_episode):
  """With reward.progress_weight the task reward gains, per agent and episode, the share
  of the way to its goal it covered (telescoping per-step terms); the parked car at its
  goal is divided by the 10 m floor, so leaving costs it."""
  worlds, plain = default_episode
  _, shaped = _episode(_selfplay(progress_weight=1.0))  # same seed: same motion
  np.testing.assert_array_equal(shaped.actions, plain.actions)
  extra = np.sum(shaped.task_reward - plain.task_reward, axis=0)[0]  # (N,)
  goal = np.asarray(worlds.goal)[0]
  start = np.asarray(worlds.state.current_sim_trajectory.xy)[0, :, 0]
  end = np.asarray(shaped.final_state.current_sim_trajectory.xy)[0, :, 0]
  d0, d1 = np.linalg.norm(start - goal, axis=-1), np.linalg.norm(end - goal, axis=-1)
  acting = np.asarray(plain.acted).any(axis=0)[0]
  want = np.where(acting, (d0 - d1) / np.maximum(d0, 10.0), 0.0)
  np.testing.assert_allclose(extra, want, atol=1e-4)
  assert d0[MOVING] > 10.0 and d0[PARKED] < 2.0
  # Direct: halfway there from 40 m is 0.5; 2 m away from a parked goal is -0.2.
  cfg = rewards.RewardConfig(progress_weight=1.0)
  r = rewards.progress_reward(jnp.array([40.0, 0.0]), jnp.array([20.0, 2.0]),
                              jnp.array([40.0, 0.0]), jnp.array([True, True]), cfg)
  np.testing.assert_allclose(np.asarray(r), [0.5, -0.2])
  with pytest.raises(ValueError, match='progress_min_distance'):
    rewards.RewardConfig(progress_min_distance=0.0)
