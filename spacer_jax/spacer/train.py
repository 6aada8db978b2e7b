"""The compiled SPACER / PPO / HR-PPO train step.

One call of the step does, inside one ``jit`` and with no host transfer:

1. sample ``W`` worlds from the device-resident pool;
2. roll out one episode of ``T`` policy steps (``lax.scan``) with every controlled agent
   acting through the shared policy (named scope ``simulation``);
3. query the anchor once over the whole episode (``reference``): the reference model's
   single teacher-forced pass for SPACER, the behaviour-cloned policy on the same
   observations for HR-PPO, nothing for PPO;
4. add the likelihood reward ``alpha * log p_ref(a_t)``, compute GAE;
5. run ``epochs x minibatches`` PPO updates with the KL term (``update``).

:func:`make_train_iteration` wraps ``K`` such steps in a ``lax.scan`` so that the host
loop only wakes up between iterations to log, evaluate and checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax
from flax import struct

from spacer_jax.models import ReferenceConfig, build_reference_inputs, reference_log_probs
from spacer_jax.spacer.gae import compute_gae
from spacer_jax.spacer.losses import LossConfig, PPOBatch, ppo_loss
from spacer_jax.spacer.rewards import AgentStatus
from spacer_jax.spacer.selfplay import Episode, SelfPlay, Worlds, select_worlds

ANCHORS = ('none', 'reference', 'policy')


@dataclasses.dataclass(frozen=True)
class PPOConfig:
  """Optimisation settings (GPUDrive defaults reported by the paper).

  Attributes:
    num_worlds: W, worlds per train step.
    lr: Adam learning rate.
    adam_eps: Adam epsilon.
    gamma: discount per policy step.
    gae_lambda: GAE lambda.
    epochs: passes over each episode's agent-steps.
    num_minibatches: minibatches per epoch (the agent-steps of a step are shuffled
      and split evenly; a remainder is dropped).
    max_grad_norm: global gradient-norm clip.
  """

  num_worlds: int = 300
  lr: float = 3e-4
  adam_eps: float = 1e-5
  gamma: float = 0.99
  gae_lambda: float = 0.95
  epochs: int = 4
  num_minibatches: int = 16
  max_grad_norm: float = 0.5

  def __post_init__(self):
    for name in ('num_worlds', 'epochs', 'num_minibatches'):
      if getattr(self, name) < 1:
        raise ValueError(f'PPOConfig.{name} must be >= 1, got {getattr(self, name)}.')
    if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
      raise ValueError('PPOConfig.gamma must be in (0, 1] and gae_lambda in [0, 1].')


@struct.dataclass
class TrainState:
  """Everything a train step changes; checkpointed as one pytree.

  Attributes:
    params: policy parameters.
    opt_state: optax state.
    rng: PRNG key of the next step.
    step: int32, train steps done.
  """

  params: Any
  opt_state: Any
  rng: jax.Array
  step: jax.Array


def make_optimizer(config: PPOConfig) -> optax.GradientTransformation:
  """Adam with global-norm gradient clipping."""
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                     optax.adam(config.lr, eps=config.adam_eps))


def init_train_state(selfplay: SelfPlay, optimizer: optax.GradientTransformation,
                     example_worlds: Worlds, rng: jax.Array) -> TrainState:
  """Fresh policy parameters and optimizer state.

  ``example_worlds`` (any batch shape) only supplies the observation's feature sizes.
  """
  init_rng, rng = jax.random.split(rng)
  one = jax.tree_util.tree_map(lambda x: x[:1], example_worlds)
  controlled = one.state.object_metadata.is_controlled
  obs = selfplay.observe(one, one.state, AgentStatus.create(controlled),
                         jnp.ones_like(controlled))
  params = jax.jit(selfplay.policy.init)(init_rng, obs)
  return TrainState(params=params, opt_state=optimizer.init(params), rng=rng,
                    step=jnp.zeros((), jnp.int32))


@dataclasses.dataclass(frozen=True)
class Anchor:
  """What the policy is anchored to.

  Attributes:
    kind: ``'none'`` (PPO), ``'reference'`` (SPACER: the reference model, which also
      gives the likelihood reward) or ``'policy'`` (HR-PPO: a behaviour-cloned policy of
      the policy's own architecture, evaluated on the same observations).
    reference_config: the reference model's config (kind ``'reference'``).
    likelihood_weight: alpha of ``alpha * log p_ref(a_t)`` in the reward (reference only).
  """

  kind: str = 'none'
  reference_config: Optional[ReferenceConfig] = None
  likelihood_weight: float = 0.0

  def __post_init__(self):
    if self.kind not in ANCHORS:
      raise ValueError(f'Anchor.kind={self.kind!r}; expected one of {ANCHORS}.')
    if self.kind == 'reference' and self.reference_config is None:
      raise ValueError('Anchor kind "reference" needs reference_config.')
    if self.kind != 'reference' and self.likelihood_weight:
      raise ValueError('a likelihood reward needs the reference anchor.')


def anchor_log_probs(selfplay: SelfPlay, anchor: Anchor, anchor_params: Any,
                     worlds: Worlds, episode: Episode) -> Optional[jax.Array]:
  """The anchor's log-distribution over tokens at every agent-step, ``(T, W, N, K)``.

  For the reference model this is ONE teacher-forced pass over the executed episode:
  the output at position ``H - 1 + t`` is the distribution of the token of step ``t``.
  None for the ``'none'`` anchor.
  """
  if anchor.kind == 'none':
    return None
  if anchor.kind == 'policy':
    logits, _ = selfplay.policy.apply(anchor_params, episode.obs)
    return jax.nn.log_softmax(logits, axis=-1)
  ids, poses, valid = selfplay.anchor_tokens(worlds, episode)
  inputs = build_reference_inputs(worlds.state, ids, poses, valid,
                                  config=anchor.reference_config)
  log_probs = reference_log_probs(anchor.reference_config, anchor_params, inputs)
  h, t = selfplay.history_tokens, selfplay.num_steps
  return jnp.moveaxis(log_probs[..., h - 1:h - 1 + t, :], -2, 0)


def _flatten(tree: Any, lead: int) -> Any:
  """Merges the first ``lead`` axes of every leaf."""
  return jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[lead:]), tree)


def _safe_ratio(num: jax.Array, den: jax.Array) -> jax.Array:
  return num / jnp.maximum(den, 1.0)


def episode_metrics(episode: Episode) -> dict[str, jax.Array]:
  """Rates over the controlled agents of an episode (scalars)."""
  controlled = episode.controlled
  n = jnp.sum(controlled).astype(jnp.float32)
  rate = lambda flag: _safe_ratio(jnp.sum(flag & controlled).astype(jnp.float32), n)
  return {
      'goal_rate': rate(episode.status.goal_reached),
      'collision_rate': rate(episode.status.collided),
      'offroad_rate': rate(episode.status.offroad),
      'agent_steps': jnp.sum(episode.acted).astype(jnp.float32),
      'agents': n,
  }


def make_train_step(selfplay: SelfPlay, anchor: Anchor, loss_config: LossConfig,
                    ppo: PPOConfig, optimizer: optax.GradientTransformation
                    ) -> Callable[[TrainState, Worlds, Any], tuple[TrainState, dict]]:
  """``train_step(state, pool, anchor_params) -> (state, metrics)``; pure and jittable.

  ``pool`` is a :class:`Worlds` batch ``(P,)`` on device; ``anchor_params`` the frozen
  reference (or BC policy) parameters, or None.
  """
  if anchor.kind == 'none' and loss_config.kl_coef:
    raise ValueError('LossConfig.kl_coef > 0 needs an anchor (reference or policy).')
  apply_fn = selfplay.policy.apply
  loss_fn = functools.partial(ppo_loss, apply_fn=apply_fn, config=loss_config)
  grad_fn = jax.value_and_grad(lambda p, b: loss_fn(p, batch=b), has_aux=True)

  def update(params, opt_state, batch: PPOBatch, rng):
    n = batch.valid.shape[0]
    size = n // ppo.num_minibatches
    if size < 1:
      raise ValueError(f'{n} agent-steps cannot be split into {ppo.num_minibatches} '
                       'minibatches.')

    def epoch(carry, key):
      perm = jax.random.permutation(key, n)[:size * ppo.num_minibatches]

      def minibatch(carry, index):
        params, opt_state = carry
        mb = jax.tree_util.tree_map(lambda x: jnp.take(x, index, axis=0), batch)
        (_, metrics), grads = grad_fn(params, mb)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        metrics['grad_norm'] = optax.tree.norm(grads)
        return (optax.apply_updates(params, updates), opt_state), metrics

      return jax.lax.scan(minibatch, carry, perm.reshape(ppo.num_minibatches, size))

    keys = jax.random.split(rng, ppo.epochs)
    (params, opt_state), metrics = jax.lax.scan(epoch, (params, opt_state), keys)
    return params, opt_state, jax.tree_util.tree_map(jnp.mean, metrics)

  def train_step(state: TrainState, pool: Worlds, anchor_params: Any):
    rng, k_pick, k_roll, k_update = jax.random.split(state.rng, 4)
    pool_size = pool.goal.shape[0]
    index = jax.random.choice(k_pick, pool_size, (ppo.num_worlds,),
                              replace=pool_size < ppo.num_worlds)
    worlds = select_worlds(pool, index)
    with jax.named_scope('simulation'):
      episode = selfplay.rollout(state.params, worlds, k_roll)
    with jax.named_scope('reference'):
      anchor_lp = anchor_log_probs(selfplay, anchor, anchor_params, worlds, episode)
    with jax.named_scope('update'):
      rewards = episode.task_reward
      metrics = episode_metrics(episode)
      acted = episode.acted
      n_acted = jnp.sum(acted).astype(jnp.float32)
      if anchor_lp is None:
        k = selfplay.policy.num_tokens
        anchor_lp = jnp.full(acted.shape + (k,), -jnp.log(float(k)), jnp.float32)
      else:
        taken = jnp.take_along_axis(anchor_lp, episode.actions[..., None], -1)[..., 0]
        taken = jnp.where(acted, taken, 0.0)
        metrics['anchor_log_likelihood'] = _safe_ratio(jnp.sum(taken), n_acted)
        if anchor.likelihood_weight:
          rewards = rewards + anchor.likelihood_weight * taken
      advantages, returns = compute_gae(rewards, episode.values, episode.done,
                                        episode.last_value, ppo.gamma, ppo.gae_lambda,
                                        valid=acted)
      batch = PPOBatch(obs=episode.obs, actions=episode.actions,
                       log_probs=episode.log_probs, values=episode.values,
                       advantages=advantages, returns=returns, ref_log_probs=anchor_lp,
                       valid=acted)
      params, opt_state, loss_metrics = update(state.params, state.opt_state,
                                               _flatten(batch, 3), k_update)
    metrics.update(loss_metrics)
    metrics['return'] = _safe_ratio(jnp.sum(rewards), metrics['agents'])
    metrics['task_return'] = _safe_ratio(jnp.sum(episode.task_reward), metrics['agents'])
    new = TrainState(params=params, opt_state=opt_state, rng=rng, step=state.step + 1)
    return new, metrics

  return train_step


def make_train_iteration(train_step: Callable, num_steps: int) -> Callable:
  """``iteration(state, pool, anchor_params) -> (state, metrics averaged over steps)``:
  ``num_steps`` train steps in one ``lax.scan`` (jit it with ``donate_argnums=0``)."""

  def iteration(state: TrainState, pool: Worlds, anchor_params: Any):
    def body(carry, _):
      return train_step(carry, pool, anchor_params)

    state, metrics = jax.lax.scan(body, state, None, length=num_steps)
    summed = {'agent_steps'}
    return state, {k: (jnp.sum(v) if k in summed else jnp.mean(v))
                   for k, v in metrics.items()}

  return iteration


def make_evaluate(selfplay: SelfPlay) -> Callable:
  """``evaluate(params, worlds, rng, greedy) -> metrics``: one episode on every world."""

  def evaluate(params: Any, worlds: Worlds, rng: jax.Array, greedy: bool = False):
    episode = selfplay.rollout(params, worlds, rng, greedy=greedy)
    metrics = episode_metrics(episode)
    metrics['task_return'] = _safe_ratio(jnp.sum(episode.task_reward), metrics['agents'])
    return metrics

  return evaluate


__all__ = ['ANCHORS', 'Anchor', 'PPOConfig', 'TrainState', 'anchor_log_probs',
           'episode_metrics', 'init_train_state', 'make_evaluate', 'make_optimizer',
           'make_train_iteration', 'make_train_step']
