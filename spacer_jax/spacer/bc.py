"""Behaviour cloning of the SPACER policy architecture on logged tokens (HR-PPO's anchor).

Every controlled agent follows its log in the token environment: at each policy step it
takes the *expert token*, the token nearest to the logged motion from its current
simulated pose (so the rollout stays on the log and the observations are the ones the
policy would see). The policy is trained by cross-entropy to predict those tokens from
its own decentralised observation. The expert rollout and the update run in one jit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from spacer_jax.spacer.observation import sample_goal_visible
from spacer_jax.spacer.policy import LateFusionPolicy
from spacer_jax.spacer.rewards import AgentStatus
from spacer_jax.spacer.selfplay import SelfPlay, Worlds, select_worlds
from spacer_jax.training import Checkpointer, MetricLogger


def expert_episode(selfplay: SelfPlay, worlds: Worlds, goal_visible: jax.Array | None = None):
  """Observations and expert tokens along the log, time-major.

  Args:
    selfplay: the policy's observation and token environment.
    worlds: ``(W,)`` prepared worlds.
    goal_visible: ``(W, N)`` bool, the goal shown to each agent for the episode (as
      PPO's goal dropout samples it); None = every goal shown.

  Returns:
    ``(obs (T, W, N, ...), tokens (T, W, N) int32, valid (T, W, N) bool)``: valid where
    the agent is controlled and its log covers the whole token.
  """
  state = worlds.state
  controlled = state.object_metadata.is_controlled & state.current_sim_trajectory.valid[
      ..., 0]
  status = AgentStatus.create(controlled)
  if goal_visible is None:
    goal_visible = jnp.ones_like(controlled)

  def step(state, _):
    obs = selfplay.observe(worlds, state, status, goal_visible)
    tokens, ok = selfplay.token_env.expert_tokens(state)
    ok = ok & controlled
    state, _ = selfplay.token_env.step(state, jnp.where(ok, tokens, -1))
    return state, (obs, tokens, ok)

  _, (obs, tokens, valid) = jax.lax.scan(step, state, None, length=selfplay.num_steps)
  return obs, tokens, valid


def imitable(obs, tokens: jax.Array, valid: jax.Array) -> jax.Array:
  """``valid`` ``(...)`` without the expert tokens the policy may not take.

  An expert token outside the speed-change bound (``obs.feasible``; the bound holds
  every transition of 500 generated logs, so this is rare) cannot be imitated.
  """
  if obs.feasible is None:
    return valid
  return valid & jnp.take_along_axis(obs.feasible, tokens[..., None], axis=-1)[..., 0]


def bc_loss(policy: LateFusionPolicy, params: Any, obs, tokens: jax.Array,
            valid: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Masked token cross-entropy and top-1 accuracy of the policy on expert tokens."""
  logits, _ = policy.apply(params, obs)
  valid = imitable(obs, tokens, valid)
  log_p = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_p, tokens[..., None], axis=-1)[..., 0]
  n = jnp.maximum(jnp.sum(valid), 1)
  loss = jnp.sum(jnp.where(valid, nll, 0.0)) / n
  acc = jnp.sum(valid & (jnp.argmax(logits, -1) == tokens)) / n
  return loss, {'bc_nll': loss, 'bc_top1': acc}


# Expert episodes of a pool are computed once and kept when they fit in this many bytes
# (e.g. 16 worlds x 32 agents x 40 steps with 64 road points: about 70 MB); larger pools
# recompute the episodes of each step's worlds.
MAX_CACHED_EPISODE_BYTES = 1 << 30


def _episode_bytes(selfplay: SelfPlay, pool: Worlds) -> int:
  shapes = jax.eval_shape(lambda w: expert_episode(selfplay, w), pool)
  return sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(shapes))


def make_bc_step(selfplay: SelfPlay, optimizer: optax.GradientTransformation,
                 batch_worlds: int) -> Callable:
  """``step(params, opt_state, pool, rng) -> (params, opt_state, metrics)``, jittable.

  ``pool`` is either ``(worlds, goal_visible)``, :class:`Worlds` ``(P,)`` with the
  ``(P, N)`` goals shown (the step rolls out the expert episode of its worlds), or the
  pool's expert episode ``(obs, tokens, valid)`` computed once with
  :func:`expert_episode` (time-major, worlds on axis 1; the logs do not change, so the
  episodes need not be recomputed every step).
  """

  def step(params, opt_state, pool, rng):
    cached = not isinstance(pool[0], Worlds)
    size = pool[1].shape[1] if cached else pool[0].goal.shape[0]
    index = jax.random.choice(rng, size, (batch_worlds,), replace=size < batch_worlds)
    if cached:
      obs, tokens, valid = jax.tree_util.tree_map(lambda x: jnp.take(x, index, axis=1),
                                                  pool)
    else:
      worlds, visible = pool
      obs, tokens, valid = expert_episode(selfplay, select_worlds(worlds, index),
                                          jnp.take(visible, index, axis=0))
    grads, metrics = jax.grad(
        lambda p: bc_loss(selfplay.policy, p, obs, tokens, valid), has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics

  return step


BC_LR_SCHEDULES = ('constant', 'cosine')


def bc_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam at ``bc.lr``, constant or cosine-decayed to 0 over ``bc.steps``
  (``bc.lr_schedule``; configs written before the field are constant)."""
  schedule = config.bc.get('lr_schedule', 'constant')
  if schedule not in BC_LR_SCHEDULES:
    raise ValueError(f'bc.lr_schedule={schedule!r}; expected one of {BC_LR_SCHEDULES}.')
  if schedule == 'cosine':
    return optax.adam(optax.cosine_decay_schedule(config.bc.lr, config.bc.steps))
  return optax.adam(config.bc.lr)


def train_bc_policy(config: ml_collections.ConfigDict, workdir: str, selfplay: SelfPlay,
                    load_scenarios: Callable[[list[int]], Any],
                    pool_seeds: Callable[[int], list[int]]) -> Any:
  """Trains (or resumes, or just loads when finished) the BC policy in ``workdir``.

  Args:
    config: the SPACER config (``bc`` section: steps, batch_worlds, lr, lr_schedule).
    workdir: checkpoint / log directory of the BC run.
    selfplay: supplies the policy, observation and token environment.
    load_scenarios: seeds -> batched scenarios.
    pool_seeds: pool index -> seeds (the BC run uses the first ``bc.num_pools``
      training pools).

  Returns:
    The trained policy parameters.
  """
  from spacer_jax.spacer.train import init_train_state
  prepare = jax.jit(selfplay.prepare)
  # Pools cycle the training set: more than it holds would repeat scenes.
  num_pools = min(config.bc.num_pools,
                  -(-config.data.num_train_scenarios // config.data.pool_size))
  pools = [prepare(load_scenarios(pool_seeds(i))) for i in range(num_pools)]
  optimizer = bc_optimizer(config)
  init = init_train_state(selfplay, optimizer, pools[0],
                          jax.random.PRNGKey(config.seed + 3))
  params, opt_state = init.params, init.opt_state
  ckpt = Checkpointer(workdir)
  restored = ckpt.restore({'params': params, 'opt_state': opt_state})
  step = 0
  if restored is not None:
    step, tree, _ = restored
    params, opt_state = tree['params'], tree['opt_state']
  if step >= config.bc.steps:
    ckpt.close()
    return params
  logger = MetricLogger(workdir, print_keys=['bc_nll', 'bc_top1'],
                        total_steps=config.bc.steps)
  # Goals hidden as in PPO (obs.goal_dropout), drawn once per agent and episode.
  goal_key = jax.random.PRNGKey(config.seed + 5)
  visible = [sample_goal_visible(jax.random.fold_in(goal_key, i), p.goal.shape[:2],
                                 selfplay.obs_config) for i, p in enumerate(pools)]
  if _episode_bytes(selfplay, pools[0]) * len(pools) <= MAX_CACHED_EPISODE_BYTES:
    episode = jax.jit(lambda w, v: expert_episode(selfplay, w, v))
    parts = [episode(p, v) for p, v in zip(pools, visible)]
    pool = jax.tree_util.tree_map(lambda *x: jnp.concatenate(x, axis=1), *parts)
  else:
    pool = (jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *pools),
            jnp.concatenate(visible))
  bc_step = jax.jit(make_bc_step(selfplay, optimizer, config.bc.batch_worlds))
  rng = jax.random.PRNGKey(config.seed + 4)
  log_every = max(1, config.bc.steps // 20)
  start = time.perf_counter()
  while step < config.bc.steps:
    params, opt_state, metrics = bc_step(params, opt_state, pool,
                                         jax.random.fold_in(rng, step))
    step += 1
    if step % log_every == 0 or step == config.bc.steps:
      logger.write(step, metrics, prefix='bc/')
    if step % (10 * log_every) == 0 or step == config.bc.steps:
      ckpt.save(step, {'params': params, 'opt_state': opt_state},
                {'kind': 'bc_policy', 'seconds': time.perf_counter() - start})
  logger.close()
  ckpt.close()
  return params


def load_bc_policy(path: str) -> Any:
  """Parameters of a finished BC run (its workdir)."""
  if not os.path.isdir(path):
    raise FileNotFoundError(f'BC checkpoint directory {path!r} does not exist.')
  out = Checkpointer(path).restore(None)
  if out is None:
    raise ValueError(f'{path} holds no finished BC checkpoint.')
  return out[1]['params']


__all__ = ['BC_LR_SCHEDULES', 'bc_loss', 'bc_optimizer', 'expert_episode', 'imitable',
           'load_bc_policy', 'make_bc_step', 'train_bc_policy']
