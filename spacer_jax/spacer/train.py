"""The compiled SPACER / PPO / HR-PPO train step.

One call of the step does, inside one ``jit`` and with no host transfer:

1. pick ``W`` worlds from the device-resident pool (:func:`sample_worlds`);
2. roll out one episode of ``T`` policy steps (``lax.scan``) with every controlled agent
   acting through the shared policy (named scope ``simulation``);
3. query the anchor once over the whole episode (``reference``): the reference model's
   single teacher-forced pass for SPACER, the behaviour-cloned policy on the same
   observations for HR-PPO, nothing for PPO;
4. add the likelihood reward ``alpha * log p_ref(a_t)``, compute GAE;
5. run ``epochs x minibatches`` PPO updates with the KL term (``update``).

:func:`make_train_iteration` wraps ``K`` such steps in a ``lax.scan`` so that the host
loop only wakes up between iterations to log, evaluate and checkpoint.

Data parallelism: given a ``'data'`` mesh (``spacer_jax.parallel``), the step is jitted
with the pool sharded over devices along its world axis and everything else replicated;
world selection, the episode, the anchor pass and the minibatch gathers are split by
world (each device works on its own worlds), and the losses' means become all-reduces, so
the gradients are averaged over devices and N devices train like one (up to the order
of floating-point sums; random draws are sharding-invariant with JAX's partitionable
threefry). Without a mesh the functions are plain single-device code.

The episode and the anchor pass run under ``shard_map`` (:func:`make_episode_fn`): each
device simulates its own worlds with one PRNG key per world, with no communication at
all. Left to the automatic partitioner they would not stay local: XLA does not split
``top_k`` along batch dimensions, so every nearest-point search (observation, road
edges, reference features) would gather all worlds onto every device.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from spacer_jax.models import ReferenceConfig, build_reference_inputs, reference_log_probs
from spacer_jax.parallel.mesh import DATA_AXIS, check_divisible, constrain
from spacer_jax.spacer.acting import SAMPLE, Decoding
from spacer_jax.spacer.gae import compute_gae
from spacer_jax.spacer.losses import LossConfig, PPOBatch, entropy
from spacer_jax.spacer.minibatch import make_minibatch_gradient, minibatch_indices
from spacer_jax.spacer.policy import CRITIC_HEAD
from spacer_jax.spacer.rewards import AgentStatus
from spacer_jax.spacer.selfplay import TIME_MAJOR_FIELDS, Episode, SelfPlay, Worlds
from spacer_jax.tokens.feasibility import restrict_log_probs

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
    num_minibatches: minibatches per epoch (the valid agent-steps of a step are
      shuffled and split evenly; padded slots and dead agents never enter).
    max_grad_norm: global gradient-norm clip.
    chunk_rows: rows per gradient chunk: a minibatch's valid agent-steps are packed
      and run in chunks of this many, so padding costs less than one chunk (a speed
      setting; the gradient does not depend on it beyond float rounding). 0 = by
      backend (``spacer.minibatch.resolve_chunk_rows``: 32 on CPU, 8192 otherwise).
    critic_warmup_steps: train steps at the start (counted from step 0 of the run) in
      which only the critic head is updated (:func:`critic_only`).
  """

  num_worlds: int = 300
  lr: float = 3e-4
  adam_eps: float = 1e-5
  gamma: float = 0.99
  gae_lambda: float = 0.95
  epochs: int = 4
  num_minibatches: int = 16
  max_grad_norm: float = 0.5
  chunk_rows: int = 0
  critic_warmup_steps: int = 0

  def __post_init__(self):
    for name in ('num_worlds', 'epochs', 'num_minibatches'):
      if getattr(self, name) < 1:
        raise ValueError(f'PPOConfig.{name} must be >= 1, got {getattr(self, name)}.')
    if self.chunk_rows < 0:
      raise ValueError(f'PPOConfig.chunk_rows must be >= 0 (0 = by backend), got '
                       f'{self.chunk_rows}.')
    if self.critic_warmup_steps < 0:
      raise ValueError(f'PPOConfig.critic_warmup_steps must be >= 0, got '
                       f'{self.critic_warmup_steps}.')
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

  @jax.jit  # One compile instead of hundreds of eagerly dispatched small ops.
  def example_obs(worlds):
    one = jax.tree_util.tree_map(lambda x: x[:1], worlds)
    controlled = one.state.object_metadata.is_controlled
    return selfplay.observe(one, one.state, AgentStatus.create(controlled),
                            jnp.ones_like(controlled))

  params = jax.jit(selfplay.policy.init)(init_rng, example_obs(example_worlds))
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
    temperature: the reference's distribution is ``softmax(log p_ref / temperature)``
      (reference only): below 1 it sharpens an anchor that is broader than the data
      (e.g. trained with label smoothing), so that the KL term does not act as an
      entropy bonus. 1 = the model as trained.
  """

  kind: str = 'none'
  reference_config: Optional[ReferenceConfig] = None
  likelihood_weight: float = 0.0
  temperature: float = 1.0

  def __post_init__(self):
    if self.kind not in ANCHORS:
      raise ValueError(f'Anchor.kind={self.kind!r}; expected one of {ANCHORS}.')
    if self.kind == 'reference' and self.reference_config is None:
      raise ValueError('Anchor kind "reference" needs reference_config.')
    if self.kind != 'reference' and self.likelihood_weight:
      raise ValueError('a likelihood reward needs the reference anchor.')
    if not self.temperature > 0:
      raise ValueError(f'Anchor.temperature={self.temperature}; expected > 0.')
    if self.kind != 'reference' and self.temperature != 1.0:
      raise ValueError('Anchor.temperature applies to the reference anchor only.')


@struct.dataclass
class AnchorWeights:
  """How strongly the policy is anchored, as traced values of the train step.

  Arrays rather than static settings, so that a schedule needs no recompilation and a
  sweep over alphas or betas is one ``vmap`` of the train step (:func:`make_sweep`).
  All fields are float32 scalars (or, vmapped, ``(S,)``).

  Attributes:
    likelihood_weight: alpha of the likelihood reward ``alpha * log p_ref(a_t)``.
    kl_coef: beta of the KL term once warmed up.
    kl_coef_start: beta at train step 0; it moves linearly to ``kl_coef`` over
      ``kl_warmup_steps`` train steps (a strong early pull toward the anchor that
      relaxes as the task reward takes over).
    kl_warmup_steps: train steps of that schedule (0 = ``kl_coef`` from the start).
  """

  likelihood_weight: jax.Array
  kl_coef: jax.Array
  kl_coef_start: jax.Array
  kl_warmup_steps: jax.Array

  @classmethod
  def create(cls, likelihood_weight: float = 0.0, kl_coef: float = 0.0,
             kl_coef_start: Optional[float] = None, kl_warmup_steps: int = 0
             ) -> AnchorWeights:
    """Constant weights (``kl_coef_start=None``: no warm-up schedule)."""
    start = kl_coef if kl_coef_start is None else kl_coef_start
    for name, value in (('likelihood_weight', likelihood_weight), ('kl_coef', kl_coef),
                        ('kl_coef_start', start), ('kl_warmup_steps', kl_warmup_steps)):
      if value < 0:
        raise ValueError(f'AnchorWeights.{name} must be >= 0, got {value}.')
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    return cls(f32(likelihood_weight), f32(kl_coef), f32(start), f32(kl_warmup_steps))

  def kl_at(self, step: jax.Array) -> jax.Array:
    """beta at train step ``step`` (int32 scalar)."""
    done = jnp.clip(step.astype(jnp.float32) / jnp.maximum(self.kl_warmup_steps, 1.0),
                    0.0, 1.0)
    done = jnp.where(self.kl_warmup_steps > 0, done, 1.0)
    return self.kl_coef_start + (self.kl_coef - self.kl_coef_start) * done


def anchor_log_probs(selfplay: SelfPlay, anchor: Anchor, anchor_params: Any,
                     worlds: Worlds, episode: Episode) -> Optional[jax.Array]:
  """The anchor's log-distribution over tokens at every agent-step, ``(T, W, N, K)``.

  For the reference model this is ONE teacher-forced pass over the executed episode:
  the output at position ``H - 1 + t`` is the distribution of the token of step ``t``,
  restricted to the agent's feasible tokens when the observations carry them. None for
  the ``'none'`` anchor.
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
  if anchor.temperature != 1.0:
    log_probs = jax.nn.log_softmax(log_probs / anchor.temperature, axis=-1)
  h, t = selfplay.history_tokens, selfplay.num_steps
  log_probs = jnp.moveaxis(log_probs[..., h - 1:h - 1 + t, :], -2, 0)
  if episode.obs.feasible is not None:
    # The anchor over the tokens the policy may take (renormalised), so the KL and the
    # likelihood reward compare distributions over the same feasible set.
    log_probs = restrict_log_probs(log_probs, episode.obs.feasible)
  return log_probs


def _world_major(tree: Any) -> Any:
  """``(T, W, N, ...)`` leaves -> ``(W, T * N, ...)``: each world's agent-steps together."""
  def move(x):
    x = jnp.swapaxes(x, 0, 1)
    return x.reshape(x.shape[:1] + (-1,) + x.shape[3:])
  return jax.tree_util.tree_map(move, tree)


def _safe_ratio(num: jax.Array, den: jax.Array) -> jax.Array:
  return num / jnp.maximum(den, 1.0)


def episode_metrics(episode: Episode) -> dict[str, jax.Array]:
  """Rates over the controlled agents of an episode (scalars).

  ``goal_rate`` counts the agents that had a goal to reach (not within its radius at
  the start), ``offroad_rate`` those not exempt because their log is off road, as
  WOSAC's off-road rate excluding log-off-road agents.
  """
  controlled = episode.controlled
  n = jnp.sum(controlled).astype(jnp.float32)

  def rate(flag, among=controlled):
    return _safe_ratio(jnp.sum(flag & among).astype(jnp.float32),
                       jnp.sum(among).astype(jnp.float32))

  status = episode.status
  return {
      'goal_rate': rate(status.goal_reached, controlled & ~status.started_at_goal),
      'collision_rate': rate(status.collided),
      'offroad_rate': rate(status.offroad, controlled & ~episode.offroad_exempt),
      'agent_steps': jnp.sum(episode.acted).astype(jnp.float32),
      'agents': n,
  }


def _block_picks(key: jax.Array, pool_size: int, num_worlds: int) -> jax.Array:
  """``(B, W / B)`` rows, within each of the ``B = gcd(P, W)`` pool blocks, drawn for the
  worlds of that block (without replacement unless a block has fewer rows than worlds)."""
  blocks = math.gcd(pool_size, num_worlds)
  rows, picks = pool_size // blocks, num_worlds // blocks

  def block(i):
    return jax.random.choice(jax.random.fold_in(key, i), rows, (picks,),
                             replace=rows < picks)

  return jax.vmap(block)(jnp.arange(blocks)).astype(jnp.int32)


def world_index(key: jax.Array, pool_size: int, num_worlds: int) -> jax.Array:
  """The pool rows ``(W,)`` int32 that :func:`sample_worlds` picks: a stratified draw.

  The pool ``(P,)`` and the worlds ``(W,)`` are both cut into ``B = gcd(P, W)`` equal,
  consecutive blocks, and the worlds of block ``b`` are drawn from the pool rows of block
  ``b`` (without replacement when ``P >= W``). Every pool row has the same chance
  ``W / P`` of being used, as in a uniform draw. Because the blocks depend only on
  ``P`` and ``W``, any device count ``D`` that divides both holds whole blocks of the
  pool and of the worlds on the same device: the draw is identical and the gather local
  on 1 or ``D`` devices. ``P == W`` (the default config) gives the pool as is.
  """
  blocks = math.gcd(pool_size, num_worlds)
  offsets = jnp.arange(blocks, dtype=jnp.int32)[:, None] * (pool_size // blocks)
  return (_block_picks(key, pool_size, num_worlds) + offsets).reshape(-1)


def sample_worlds(pool: Worlds, key: jax.Array, num_worlds: int,
                  mesh: Optional[Mesh] = None) -> Worlds:
  """The step's ``num_worlds`` worlds from ``pool`` ``(P,)``: rows :func:`world_index`.

  Gathers block by block (``(P,) -> (B, P / B)``) so that, with the pool sharded over
  ``mesh``, every device only reads the pool rows it holds.
  """
  pool_size = pool.goal.shape[0]
  check_divisible(mesh, num_worlds=num_worlds, pool_size=pool_size)
  if pool_size == num_worlds:
    return constrain(pool, mesh)
  blocks = math.gcd(pool_size, num_worlds)
  picks = _block_picks(key, pool_size, num_worlds)
  take = jax.vmap(lambda x, i: jnp.take(x, i, axis=0))

  def gather(x):
    blocked = constrain(x.reshape((blocks, pool_size // blocks) + x.shape[1:]), mesh)
    return take(blocked, picks).reshape((num_worlds,) + x.shape[1:])

  return constrain(jax.tree_util.tree_map(gather, pool), mesh)


# ``shard_map`` out_specs of an Episode: worlds on axis 1 of the time-major fields.
_EPISODE_SPECS = Episode(**{
    f.name: P(None, DATA_AXIS) if f.name in TIME_MAJOR_FIELDS else P(DATA_AXIS)
    for f in dataclasses.fields(Episode)})


def make_episode_fn(selfplay: SelfPlay, anchor: Optional[Anchor] = None,
                    mesh: Optional[Mesh] = None, decoding: Decoding = SAMPLE) -> Callable:
  """``episode_fn(params, anchor_params, worlds, rng) -> (episode, anchor_log_probs)``.

  One episode on every world (``rng`` split into one key per world) and, for an anchor
  other than ``'none'``, its log-distribution ``(T, W, N, K)`` over the episode (else
  None). With ``mesh`` both run under ``shard_map``: every device simulates and scores
  its own worlds with no communication (parameters replicated), and the results come out
  sharded along the world axis. The draws do not depend on the device count.
  ``decoding`` chooses the tokens (training samples the whole distribution).
  """
  def local(params, anchor_params, worlds, keys):
    with jax.named_scope('simulation'):
      episode = selfplay.rollout_per_world(params, worlds, keys, decoding)
    anchor_lp = None
    if anchor is not None:
      with jax.named_scope('reference'):
        anchor_lp = anchor_log_probs(selfplay, anchor, anchor_params, worlds, episode)
    return episode, anchor_lp

  def episode_fn(params, anchor_params, worlds: Worlds, rng: jax.Array):
    num_worlds = worlds.goal.shape[0]
    check_divisible(mesh, num_worlds=num_worlds)
    keys = jax.random.split(rng, num_worlds)
    if mesh is None:
      return local(params, anchor_params, worlds, keys)
    has_lp = anchor is not None and anchor.kind != 'none'
    # check_vma=False: the scans inside start from constant (unvarying) carries that
    # become per-device values; every output is declared sharded, none replicated, so
    # there is nothing for the check to protect.
    sharded = jax.shard_map(
        local, mesh=mesh, in_specs=(P(), P(), P(DATA_AXIS), P(DATA_AXIS)),
        out_specs=(_EPISODE_SPECS, P(None, DATA_AXIS) if has_lp else None),
        check_vma=False)
    return sharded(params, anchor_params, constrain(worlds, mesh), constrain(keys, mesh))

  return episode_fn


def critic_only(grads: Any, warming_up: jax.Array) -> Any:
  """``grads`` with every leaf outside the critic head zeroed while ``warming_up``.

  The critic warm-up (``PPOConfig.critic_warmup_steps``) fits the value head on the
  policy's current features before the policy moves: a policy started from BC would
  otherwise be pushed around by the advantages of an untrained critic, and training
  the shared trunk on the value loss alone would change the policy too. The head is the
  parameter subtree named :data:`spacer_jax.spacer.policy.CRITIC_HEAD`.
  """
  in_head = lambda path: any(getattr(k, 'key', None) == CRITIC_HEAD for k in path)
  keep = lambda path, g: g if in_head(path) else jnp.where(warming_up, jnp.zeros_like(g), g)
  if not any(in_head(p) for p, _ in jax.tree_util.tree_flatten_with_path(grads)[0]):
    raise ValueError(f'PPOConfig.critic_warmup_steps > 0 needs a critic head named '
                     f'{CRITIC_HEAD!r} in the policy parameters; none found.')
  return jax.tree_util.tree_map_with_path(keep, grads)


def make_train_step(selfplay: SelfPlay, anchor: Anchor, loss_config: LossConfig,
                    ppo: PPOConfig, optimizer: optax.GradientTransformation,
                    mesh: Optional[Mesh] = None
                    ) -> Callable[..., tuple[TrainState, dict]]:
  """``train_step(state, pool, anchor_params, weights=None) -> (state, metrics)``; pure
  and jittable.

  ``pool`` is a :class:`Worlds` batch ``(P,)`` on device; ``anchor_params`` the frozen
  reference (or BC policy) parameters, or None; ``weights`` the traced
  :class:`AnchorWeights` (None = ``anchor.likelihood_weight`` and
  ``loss_config.kl_coef``, constant). Without an anchor the weights are unused.

  With ``mesh`` (a ``'data'`` mesh from
  ``spacer_jax.parallel.make_mesh``) the episode and anchor pass run per device
  (:func:`make_episode_fn`) and sharding constraints keep the PPO batch split over
  devices along the world axis; jit the step with the pool
  sharded the same way and the state replicated (``apps.train_spacer`` does). ``W`` and
  ``P`` must then be multiples of the device count.
  """
  if anchor.kind == 'none' and loss_config.kl_coef:
    raise ValueError('LossConfig.kl_coef > 0 needs an anchor (reference or policy).')
  check_divisible(mesh, num_worlds=ppo.num_worlds)
  episode_fn = make_episode_fn(selfplay, anchor, mesh)
  minibatch_gradient = make_minibatch_gradient(selfplay.policy.apply, loss_config,
                                               ppo.chunk_rows, mesh)

  def update(params, opt_state, batch: PPOBatch, rng, kl_coef, warming_up):
    """PPO epochs over ``batch``, laid out ``(W, T * N, ...)`` (world-major)."""
    m = ppo.num_minibatches

    def epoch(carry, key):
      index, in_mb = minibatch_indices(batch.valid, key, m)

      def minibatch(carry, xs):
        index, in_mb = xs
        params, opt_state = carry
        grads, metrics = minibatch_gradient(params, batch, index, in_mb, kl_coef)
        if ppo.critic_warmup_steps:
          grads = critic_only(grads, warming_up)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        # An empty minibatch (fewer valid agent-steps than minibatches) must not move
        # Adam's moments or the parameters.
        nonempty = metrics.pop('rows') > 0
        keep = lambda new, old: jax.tree_util.tree_map(
            lambda a, b: jnp.where(nonempty, a, b), new, old)
        params = keep(optax.apply_updates(params, updates), params)
        opt_state = keep(new_opt_state, opt_state)
        metrics['grad_norm'] = optax.tree.norm(grads)
        return (params, opt_state), metrics

      return jax.lax.scan(minibatch, carry, (index, in_mb))

    keys = jax.random.split(rng, ppo.epochs)
    (params, opt_state), metrics = jax.lax.scan(epoch, (params, opt_state), keys)
    return params, opt_state, jax.tree_util.tree_map(jnp.mean, metrics)

  default_weights = AnchorWeights.create(anchor.likelihood_weight, loss_config.kl_coef)

  def train_step(state: TrainState, pool: Worlds, anchor_params: Any,
                 weights: Optional[AnchorWeights] = None):
    weights = default_weights if weights is None else weights
    kl_coef = None if anchor.kind == 'none' else weights.kl_at(state.step)
    rng, k_pick, k_roll, k_update = jax.random.split(state.rng, 4)
    worlds = sample_worlds(pool, k_pick, ppo.num_worlds, mesh)
    episode, anchor_lp = episode_fn(state.params, anchor_params, worlds, k_roll)
    with jax.named_scope('update'):
      rewards = episode.task_reward
      metrics = episode_metrics(episode)
      acted = episode.acted
      n_acted = jnp.sum(acted).astype(jnp.float32)
      if anchor_lp is not None:
        taken = jnp.take_along_axis(anchor_lp, episode.actions[..., None], -1)[..., 0]
        taken = jnp.where(acted, taken, 0.0)
        metrics['anchor_log_likelihood'] = _safe_ratio(jnp.sum(taken), n_acted)
        # The anchor's own entropy per acted agent-step, to read the policy's
        # ``entropy`` against: a policy far above it is being flattened by the KL.
        anchor_entropy = entropy(anchor_lp)  # -inf (infeasible) tokens count 0.
        metrics['anchor_entropy'] = _safe_ratio(
            jnp.sum(jnp.where(acted, anchor_entropy, 0.0)), n_acted)
        if anchor.kind == 'reference':
          rewards = rewards + weights.likelihood_weight * taken
      advantages, returns = compute_gae(rewards, episode.values, episode.done,
                                        episode.last_value, ppo.gamma, ppo.gae_lambda,
                                        valid=acted)
      batch = PPOBatch(obs=episode.obs, actions=episode.actions,
                       log_probs=episode.log_probs, values=episode.values,
                       advantages=advantages, returns=returns, ref_log_probs=anchor_lp,
                       valid=acted)
      params, opt_state, loss_metrics = update(
          state.params, state.opt_state, constrain(_world_major(batch), mesh), k_update,
          kl_coef, state.step < ppo.critic_warmup_steps)
    metrics.update(loss_metrics)
    if kl_coef is not None:
      metrics['kl_coef'] = kl_coef
    metrics['return'] = _safe_ratio(jnp.sum(rewards), metrics['agents'])
    metrics['task_return'] = _safe_ratio(jnp.sum(episode.task_reward), metrics['agents'])
    new = TrainState(params=params, opt_state=opt_state, rng=rng, step=state.step + 1)
    return new, metrics

  return train_step


def make_train_iteration(train_step: Callable, num_steps: int) -> Callable:
  """``iteration(state, pool, anchor_params, weights=None) -> (state, metrics averaged
  over steps)``: ``num_steps`` train steps in one ``lax.scan`` (jit it with
  ``donate_argnums=0``)."""

  def iteration(state: TrainState, pool: Worlds, anchor_params: Any,
                weights: Optional[AnchorWeights] = None):
    def body(carry, _):
      return train_step(carry, pool, anchor_params, weights)

    state, metrics = jax.lax.scan(body, state, None, length=num_steps)
    summed = {'agent_steps'}
    return state, {k: (jnp.sum(v) if k in summed else jnp.mean(v))
                   for k, v in metrics.items()}

  return iteration


def make_sweep(iteration: Callable) -> Callable:
  """``sweep(states, pool, anchor_params, weights) -> (states, metrics)``: ``S`` runs
  of ``iteration`` side by side in one compiled call, one per row of ``states`` and
  ``weights`` (both with a leading ``(S,)`` axis; e.g. four alphas), sharing the pool
  and the anchor. Metrics come out ``(S,)``. Use :func:`stack_runs` to build the rows.
  """
  return jax.vmap(iteration, in_axes=(0, None, None, 0))


def stack_runs(trees: list[Any]) -> Any:
  """Stacks train states or :class:`AnchorWeights` of ``S`` runs along a new axis 0."""
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def make_evaluate(selfplay: SelfPlay, mesh: Optional[Mesh] = None,
                  decoding: Decoding = SAMPLE) -> Callable:
  """``evaluate(params, worlds, rng) -> metrics``: one episode on every world, tokens
  chosen by ``decoding`` (the same acting path as training and ``experiments.evaluate``).

  With ``mesh`` the worlds stay split over devices (jit with them sharded and the
  parameters replicated); their number must then be a multiple of the device count.
  """
  episode_fn = make_episode_fn(selfplay, None, mesh, decoding=decoding)

  def evaluate(params: Any, worlds: Worlds, rng: jax.Array):
    check_divisible(mesh, eval_worlds=worlds.goal.shape[0])
    episode, _ = episode_fn(params, None, worlds, rng)
    metrics = episode_metrics(episode)
    metrics['task_return'] = _safe_ratio(jnp.sum(episode.task_reward), metrics['agents'])
    return metrics

  return evaluate


__all__ = ['ANCHORS', 'Anchor', 'AnchorWeights', 'PPOConfig', 'TrainState', 'critic_only',
           'anchor_log_probs', 'episode_metrics', 'init_train_state', 'make_episode_fn',
           'make_evaluate', 'make_optimizer', 'make_sweep', 'make_train_iteration',
           'make_train_step', 'minibatch_indices', 'sample_worlds', 'stack_runs',
           'world_index']
