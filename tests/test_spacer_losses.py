"""SPACER losses, GAE and rewards against hand computations and plain-Python references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.spacer import gae, losses, rewards

NEG_INF = -np.inf


def _np_log_softmax(x):
  x = np.asarray(x, np.float64)
  m = np.max(x, -1, keepdims=True)
  return x - m - np.log(np.sum(np.exp(x - m), -1, keepdims=True))


def _direct_kl(lp, lq):
  """sum_k p_k (log p_k - log q_k), skipping p_k = 0, one row at a time."""
  p_log, q_log = _np_log_softmax(lp), _np_log_softmax(lq)
  total = 0.0
  for k in range(len(p_log)):
    if np.exp(p_log[k]) > 0:
      total += np.exp(p_log[k]) * (p_log[k] - q_log[k])
  return total


# -- KL and entropy -------------------------------------------------------------------


def test_kl_closed_form_matches_direct_sum():
  rng = np.random.default_rng(0)
  lp = rng.normal(size=(4, 7)) * 2
  lq = rng.normal(size=(4, 7)) * 2
  # Masked tokens: p has no mass on token 0 of row 1; q none where p has none either.
  lp[1, 0] = NEG_INF
  lq[1, 0] = NEG_INF
  lp[2, 3] = NEG_INF
  kl = jax.jit(losses.categorical_kl)(jnp.asarray(lp, jnp.float32), jnp.asarray(lq, jnp.float32))
  expected = [_direct_kl(lp[i], lq[i]) for i in range(4)]
  np.testing.assert_allclose(kl, expected, rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(kl) >= 0)
  # KL(p || p) = 0; q without mass where p has some gives +inf.
  np.testing.assert_allclose(losses.categorical_kl(lp[:1], lp[:1]), 0.0, atol=1e-6)
  bad = lq[:1].copy()
  bad[0, 2] = NEG_INF
  assert np.isposinf(losses.categorical_kl(jnp.asarray(lp[:1]), jnp.asarray(bad)))[0]


def test_kl_and_entropy_masked_rows_are_zero_with_finite_gradients():
  lp = jnp.array([[0.3, -1.0, 2.0], [NEG_INF, NEG_INF, NEG_INF]])
  lq = jnp.array([[0.0, 0.0, 0.0], [np.nan, 1.0, NEG_INF]])
  valid = jnp.array([True, False])
  def total(x):
    return jnp.sum(losses.categorical_kl(x, lq, valid) + losses.entropy(x, valid))
  value, grad = jax.value_and_grad(total)(lp)
  assert np.isfinite(float(value)) and np.all(np.isfinite(grad))
  np.testing.assert_array_equal(grad[1], 0.0)
  np.testing.assert_allclose(value, _direct_kl(lp[0], lq[0]) + float(
      -np.sum(np.exp(_np_log_softmax(lp[0])) * _np_log_softmax(lp[0]))), rtol=1e-5)


def test_entropy_matches_direct_sum():
  logits = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, NEG_INF, 0.5]])
  h = losses.entropy(jnp.asarray(logits))
  p = np.exp(_np_log_softmax(logits[1, [0, 1, 3]]))
  np.testing.assert_allclose(h, [np.log(4), -np.sum(p * np.log(p))], rtol=1e-6)


# -- PPO loss ------------------------------------------------------------------------------


def _batch(logits, actions, old_logp, adv, returns, old_values, ref_logits, valid):
  """A batch whose 'observation' is irrelevant: apply_fn returns the params."""
  return losses.PPOBatch(
      obs=None, actions=jnp.asarray(actions, jnp.int32),
      log_probs=jnp.asarray(old_logp, jnp.float32), values=jnp.asarray(old_values, jnp.float32),
      advantages=jnp.asarray(adv, jnp.float32), returns=jnp.asarray(returns, jnp.float32),
      ref_log_probs=jnp.asarray(_np_log_softmax(ref_logits), jnp.float32),
      valid=jnp.asarray(valid, bool))


def _apply(params, _obs):
  return params['logits'], params['values']


THREE = dict(
    logits=np.log(np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]])),
    values=np.array([0.5, -0.2, 1.0]),
    actions=[0, 1, 2],
    # Old probabilities of the taken actions 0.4, 0.4, 0.5 -> ratios 1.25, 1.5, 1.0.
    old_logp=np.log([0.4, 0.4, 0.5]),
    adv=[1.0, -2.0, 0.5],
    returns=[1.0, 0.0, 0.0],
    old_values=[0.0, 0.0, 0.0],
    ref_logits=np.zeros((3, 3)),
)


# Jitted once per shape and config: eager jax compiles every primitive separately.
_loss = jax.jit(losses.ppo_loss, static_argnums=(1, 3))
_grad = jax.jit(jax.grad(lambda p, b, c: losses.ppo_loss(p, _apply, b, c)[0]),
                static_argnums=2)


def _params():
  return {'logits': jnp.asarray(THREE['logits'], jnp.float32),
          'values': jnp.asarray(THREE['values'], jnp.float32)}


def test_ppo_loss_by_hand_on_three_samples():
  batch = _batch(THREE['logits'], THREE['actions'], THREE['old_logp'], THREE['adv'],
                    THREE['returns'], THREE['old_values'], THREE['ref_logits'], [1, 1, 1])
  config = losses.LossConfig(normalize_advantages=False)
  loss, m = _loss(_params(), _apply, batch, config)
  # Clipped surrogate: min(r A, clip(r, 0.8, 1.2) A) = min(1.25, 1.2) = 1.2;
  # min(-3, -2.4) = -3; min(0.5, 0.5) = 0.5.  L_clip = -(1.2 - 3 + 0.5) / 3.
  pg = -(1.2 - 3.0 + 0.5) / 3
  vl = 0.5 * ((0.5 - 1.0) ** 2 + (-0.2) ** 2 + 1.0**2) / 3
  p = np.exp(THREE['logits'])
  ent = -np.sum(p * np.log(p), -1).mean()
  kl = np.mean(np.sum(p * (np.log(p) - np.log(1 / 3)), -1))
  expected = pg + 0.3 * vl - 1e-4 * ent + 0.1 * kl
  np.testing.assert_allclose(m['policy_loss'], pg, rtol=1e-5)
  np.testing.assert_allclose(m['value_loss'], vl, rtol=1e-5)
  np.testing.assert_allclose(m['entropy'], ent, rtol=1e-5)
  np.testing.assert_allclose(m['kl_ref'], kl, rtol=1e-5)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(m['clip_fraction'], 2 / 3, rtol=1e-6)  # 1.25 and 1.5.
  r = np.array([1.25, 1.5, 1.0])
  np.testing.assert_allclose(m['approx_kl'], np.mean(r - 1 - np.log(r)), rtol=1e-5)


def test_ppo_loss_normalisation_masks_and_value_clip():
  # A fourth, invalid sample holding garbage must change nothing.
  logits = np.concatenate([THREE['logits'], np.full((1, 3), 7.0)])
  batch = _batch(logits, THREE['actions'] + [0], list(THREE['old_logp']) + [NEG_INF],
                    THREE['adv'] + [np.nan], THREE['returns'] + [1e9],
                    THREE['old_values'] + [0.0], np.concatenate([THREE['ref_logits'],
                                                                 np.zeros((1, 3))]),
                    [1, 1, 1, 0])
  params = {'logits': jnp.asarray(logits, jnp.float32),
            'values': jnp.asarray(np.append(THREE['values'], 5.0), jnp.float32)}
  config = losses.LossConfig(value_clip=0.3)
  loss, m = _loss(params, _apply, batch, config)
  a = np.array(THREE['adv'])
  a = (a - a.mean()) / (a.std() + 1e-8)
  r = np.array([1.25, 1.5, 1.0])
  pg = -np.mean(np.minimum(r * a, np.clip(r, 0.8, 1.2) * a))
  v_new = THREE['values']
  v_clip = np.clip(v_new, -0.3, 0.3)  # Old values are 0.
  ret = np.array(THREE['returns'])
  vl = 0.5 * np.mean(np.maximum((v_new - ret) ** 2, (v_clip - ret) ** 2))
  np.testing.assert_allclose(m['policy_loss'], pg, rtol=1e-5)
  np.testing.assert_allclose(m['value_loss'], vl, rtol=1e-5)
  np.testing.assert_allclose(m['valid_fraction'], 0.75)
  grads = _grad(params, batch, config)
  assert np.all(np.isfinite(grads['logits'])) and np.all(np.isfinite(grads['values']))
  np.testing.assert_array_equal(grads['logits'][3], 0.0)
  assert np.isfinite(float(loss))


def test_kl_term_pulls_the_policy_towards_the_reference():
  batch = _batch(THREE['logits'], THREE['actions'], THREE['old_logp'], [0.0, 0.0, 0.0],
                    THREE['values'], THREE['old_values'], np.log(
                        [[0.1, 0.1, 0.8]] * 3), [1, 1, 1])
  config = losses.LossConfig(kl_coef=1.0, entropy_coef=0.0)
  grads = _grad(_params(), batch, config)
  # Descending the gradient raises the logit of token 2 relative to the others.
  g = np.asarray(grads['logits'])
  assert np.all(g[:, 2] < g[:, 0]) and np.all(g[:, 2] < g[:, 1])


def test_loss_config_validation():
  with pytest.raises(ValueError, match='clip_eps'):
    losses.LossConfig(clip_eps=0.0)
  with pytest.raises(ValueError, match='value_clip'):
    losses.LossConfig(value_clip=-1.0)
  assert losses.LossConfig().kl_coef == 0.1 and losses.LossConfig().value_coef == 0.3


# -- GAE ---------------------------------------------------------------------------------


def _gae_reference(r, v, d, last, gamma, lam, valid):
  """A plain loop, one agent at a time, over the conventions of gae.py."""
  t_len = len(r)
  adv = np.zeros(t_len)
  next_v, next_a, next_ok = last, 0.0, True
  for t in reversed(range(t_len)):
    if not valid[t]:
      next_v, next_a, next_ok = 0.0, 0.0, False
      continue
    cont = (not d[t]) and next_ok
    delta = r[t] + (gamma * next_v if cont else 0.0) - v[t]
    adv[t] = delta + (gamma * lam * next_a if cont else 0.0)
    next_v, next_a, next_ok = v[t], adv[t], True
  return adv, np.where(valid, adv + v, 0.0)


def test_gae_matches_a_python_loop():
  rng = np.random.default_rng(0)
  t_len, agents = 12, 4
  r = rng.normal(size=(t_len, agents))
  v = rng.normal(size=(t_len, agents))
  d = rng.random((t_len, agents)) < 0.15
  last = rng.normal(size=agents)
  valid = np.ones((t_len, agents), bool)
  valid[7:, 1] = False  # Removed after step 6 (done there).
  d[6, 1] = True
  valid[:3, 2] = False  # Appears at step 3.
  valid[5, 3] = False  # A gap: the step before it is cut.
  r[~valid] = np.nan  # Garbage in invalid slots must not leak.
  adv, ret = jax.jit(gae.compute_gae, static_argnums=(4, 5))(
      r, v, d, last, 0.99, 0.95, valid)
  for a in range(agents):
    ref_adv, ref_ret = _gae_reference(r[:, a], v[:, a], d[:, a], last[a], 0.99, 0.95,
                                      valid[:, a])
    np.testing.assert_allclose(adv[:, a], ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret[:, a], ref_ret, rtol=1e-5, atol=1e-5)


def test_gae_by_hand_and_shape_errors():
  # gamma = lam = 0.5, no dones: A_1 = 1 + 0.5 * 4 - 2 = 1; A_0 = 0 + 0.5 * 2 - 1 + 0.25 * 1.
  adv, ret = gae.compute_gae(jnp.array([0.0, 1.0]), jnp.array([1.0, 2.0]),
                             jnp.array([False, False]), jnp.array(4.0), 0.5, 0.5)
  np.testing.assert_allclose(adv, [0.25, 1.0])
  np.testing.assert_allclose(ret, [1.25, 3.0])
  with pytest.raises(ValueError, match='values'):
    gae.compute_gae(jnp.zeros((3, 2)), jnp.zeros((3,)), jnp.zeros((3, 2)), jnp.zeros(2))
  with pytest.raises(ValueError, match='last_value'):
    gae.compute_gae(jnp.zeros((3, 2)), jnp.zeros((3, 2)), jnp.zeros((3, 2)), jnp.zeros(3))


# -- rewards -------------------------------------------------------------------------------


def test_task_and_spacer_reward():
  config = rewards.RewardConfig()
  col = jnp.array([True, False, False, True, True])
  off = jnp.array([False, True, False, True, False])
  goal = jnp.array([False, False, True, True, False])
  alive = jnp.array([True, True, True, True, False])
  task = rewards.task_reward(col, off, goal, alive, config)
  np.testing.assert_allclose(task, [-0.75, -0.75, 1.0, -0.5, 0.0])
  logp = jnp.array([-5.0, -1.0, 0.0, -2.0, -3.0])
  np.testing.assert_allclose(rewards.spacer_reward(task, logp, alive, 0.01),
                             [-0.8, -0.76, 1.0, -0.52, 0.0], rtol=1e-6)


def _run(config, flags):
  """Feeds per-step (collided, offroad, reached) flags of one agent through the status."""
  status = rewards.AgentStatus.create(jnp.array([True]))
  out = []
  for col, off, goal in flags:
    status, ev = rewards.update_status(status, jnp.array([col]), jnp.array([off]),
                                       jnp.array([goal]), config)
    out.append((float(rewards.step_reward(ev, jnp.zeros(1), config, 0.001)[0]), bool(ev.done[0]),
                bool(ev.acted[0])))
  return status, out


@pytest.mark.parametrize('behaviour', ['remove', 'freeze', 'continue'])
def test_terminal_behaviours(behaviour):
  # Goals after a collision allowed here, to see each behaviour's goal (the default
  # forfeits it: tests/test_spacer_episodes.py).
  config = rewards.RewardConfig(after_collision=behaviour, after_goal=behaviour,
                                goal_after_infraction=True)
  steps = [(False, False, False), (True, False, False), (True, False, True),
           (False, False, True)]
  status, out = _run(config, steps)
  if behaviour == 'continue':
    # Penalised at the first colliding step only, goal paid once, never done.
    assert out == [(0.0, False, True), (-0.75, False, True), (1.0, False, True),
                   (0.0, False, True)]
    assert bool(status.alive[0]) and not bool(status.frozen[0] | status.removed[0])
  else:
    # Done at the first collision; later steps neither act nor earn anything.
    assert out == [(0.0, False, True), (-0.75, True, True), (0.0, False, False),
                   (0.0, False, False)]
    assert not bool(status.alive[0])
    assert bool(status.frozen[0]) == (behaviour == 'freeze')
    assert bool(status.removed[0]) == (behaviour == 'remove')
  assert bool(status.collided[0])
  assert bool(status.goal_reached[0]) == (behaviour == 'continue')


def test_removal_wins_over_freezing_and_config_errors():
  config = rewards.RewardConfig(after_collision='freeze', after_offroad='remove')
  status, out = _run(config, [(True, True, False)])
  assert out == [(-1.5, True, True)]
  assert bool(status.removed[0]) and not bool(status.frozen[0])
  with pytest.raises(ValueError, match='after_goal'):
    rewards.RewardConfig(after_goal='explode')


def test_event_flags_from_simulator_metrics(two_lane_state):
  # No reset: without a road-edge index the metrics take the exact brute-force path.
  t = 10
  state = two_lane_state.replace(timestep=jnp.asarray(t, jnp.int32))
  # Put car 1 onto car 0 (collision) and car 2 off the road (|y| > 3.5).
  sim = state.sim_trajectory
  x0, y0 = float(sim.x[0, t]), float(sim.y[0, t])
  sim = sim.replace(x=sim.x.at[1, t].set(x0 + 1.0), y=sim.y.at[1, t].set(y0).at[2, t].set(8.0))
  state = state.replace(sim_trajectory=sim)
  goal = jnp.stack([sim.x[:, t], sim.y[:, t]], -1).at[0].add(jnp.array([1.5, 0.0]))
  goal = goal.at[1].add(jnp.array([3.0, 0.0]))
  col, off, reached = jax.jit(rewards.event_flags, static_argnums=2)(
      state, goal, rewards.RewardConfig())
  np.testing.assert_array_equal(col[:3], [True, True, False])
  np.testing.assert_array_equal(off[:3], [False, False, True])
  np.testing.assert_array_equal(reached[:3], [True, False, True])
  assert not bool(jnp.any(col[3:] | off[3:] | reached[3:]))


def test_ppo_loss_without_anchor_reports_kl_to_uniform():
  batch = _batch(THREE['logits'], THREE['actions'], THREE['old_logp'], THREE['adv'],
                 THREE['returns'], THREE['old_values'], THREE['ref_logits'], [1, 1, 1])
  batch = batch.replace(ref_log_probs=None)
  loss, m = _loss(_params(), _apply, batch, losses.LossConfig(kl_coef=0.0))
  p = np.exp(THREE['logits'])
  kl = np.mean(np.sum(p * (np.log(p) - np.log(1 / 3)), -1))
  np.testing.assert_allclose(m['kl_ref'], kl, rtol=1e-5)
  assert np.isfinite(loss)
  with pytest.raises(ValueError, match='kl_coef'):
    losses.ppo_loss(_params(), _apply, batch, losses.LossConfig(kl_coef=0.1))
