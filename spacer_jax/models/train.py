"""Training the reference model: train state, optimiser, jitted train / eval / CAT-K steps.

* Teacher forcing: logged scenarios are tokenised (``tokenize``) and assembled
  (``build_reference_inputs``) once per scenario set with :func:`make_inputs`; the train
  step runs one dropout pass, ``next_token_loss`` with label smoothing, and an AdamW
  update (linear warm-up, cosine decay, global-norm clipping).
* Eval: token NLL and top-1 / top-5 accuracy on held-out scenarios
  (:func:`eval_step`), and closed-loop figures (:func:`closed_loop_metrics`): minADE
  over a few sampled rollouts, collision and off-road rates.
* CAT-K (closed-loop fine-tuning): :func:`catk_train_step` rolls the model out, at each
  step executing among its top-K tokens the one closest to the logged motion, then
  trains teacher-forced on that sequence (the rollout's own tokens and poses as inputs,
  the chosen tokens as targets).
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

from spacer_jax.models.api import (
    ReferenceInputs,
    build_reference_inputs,
    init_reference,
    reference_log_probs,
)
from spacer_jax.models.config import ReferenceConfig
from spacer_jax.models.features import NUM_MOTION_FEATURES
from spacer_jax.models.losses import next_token_loss
from spacer_jax.models.reference import position_valid
from spacer_jax.models.rollout import (
    RolloutResult,
    catk_selector,
    rollout_with_selector,
    sampling_selector,
)
from spacer_jax.sim.datatypes import SimulatorState, Trajectory
from spacer_jax.tokens.token_env import TokenEnvironment
from spacer_jax.tokens.tokenize import tokenize
from spacer_jax.tokens.vocabulary import TokenVocabulary


@struct.dataclass
class TrainState:
  """Everything a resumed run needs: step, parameters, optimiser state, PRNG key."""

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def make_optimizer(lr: float, total_steps: int, warmup_steps: int = 0,
                   weight_decay: float = 0.01, grad_clip: float = 1.0,
                   end_lr_fraction: float = 0.0) -> optax.GradientTransformation:
  """AdamW with linear warm-up to ``lr`` then cosine decay to ``end_lr_fraction * lr``
  over ``total_steps``, after global-norm clipping at ``grad_clip``."""
  if total_steps < 1:
    raise ValueError(f'total_steps must be >= 1, got {total_steps}')
  warmup = min(int(warmup_steps), total_steps - 1)
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0 if warmup else lr, peak_value=lr, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=lr * end_lr_fraction)
  return optax.chain(optax.clip_by_global_norm(grad_clip),
                     optax.adamw(schedule, weight_decay=weight_decay))


def make_inputs(vocab: TokenVocabulary, scenarios: SimulatorState,
                config: ReferenceConfig) -> ReferenceInputs:
  """Tokenises the logs of ``scenarios`` (batch ``(...)``) and assembles model inputs.

  Jittable. Returns ``ReferenceInputs`` with ``L = (T - 1) // S`` positions and the map
  segments around every object valid at the current step (``api.map_anchors``), as the
  rollout and SPACER's anchor pass select them.
  """
  tok = tokenize(vocab, scenarios.log_trajectory, scenarios.object_metadata.object_types)
  return build_reference_inputs(scenarios, tok.token_ids, tok.poses, tok.valid,
                                config=config)


def init_train_state(config: ReferenceConfig, optimizer: optax.GradientTransformation,
                     example: ReferenceInputs, rng: jax.Array,
                     params: Optional[Any] = None) -> TrainState:
  """A fresh train state (parameters initialised unless ``params`` is given)."""
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.key_data(rng)  # Raw uint32 keys, so that orbax can save the state.
  init_rng, rng = jax.random.split(rng)
  if params is None:
    params = init_reference(config, init_rng, example)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params), rng=rng)


def map_agent_rel_kernel(params: Any, fn: Callable[[jax.Array], jax.Array]) -> Any:
  """``params`` with the input kernel of the agent->agent relative embedding (``(F,
  rel_dim)``: rows are the relative pose features, then the motion features) replaced by
  ``fn(kernel)``; nothing else is copied or changed."""
  inner = dict(params['params'])
  rel = dict(inner['agent_rel'])
  dense = dict(rel['in'])
  dense['kernel'] = fn(jnp.asarray(dense['kernel']))
  rel['in'], inner['agent_rel'] = dense, rel
  return {**params, 'params': inner}


def add_motion_features(config: ReferenceConfig, params: Any
                        ) -> tuple[ReferenceConfig, Any]:
  """A model without ``agent_motion_features`` turned into one with them that computes
  the same: the agent->agent relative embedding gains zero input weights for the
  motion features (``features.NUM_MOTION_FEATURES``), so fine-tuning starts from the
  loaded model's predictions.

  Args:
    config: the loaded model's config (``agent_motion_features`` False).
    params: its variables ``{'params': ...}``.

  Returns:
    ``(config, params)`` with the motion features on.
  """
  if config.agent_motion_features:
    raise ValueError('the model already has agent motion features')
  widen = lambda k: jnp.concatenate(
      [k, jnp.zeros((NUM_MOTION_FEATURES, k.shape[1]), k.dtype)], axis=0)
  return (dataclasses.replace(config, agent_motion_features=True),
          map_agent_rel_kernel(params, widen))


@struct.dataclass
class LogBatch:
  """What noised tokenisation re-reads every step: the logs behind a batch of inputs.

  Attributes:
    trajectory: ``Trajectory (B, N, T)`` logged trajectories.
    object_types: ``(B, N)`` WOMD object types.
  """

  trajectory: Trajectory
  object_types: jax.Array


def log_batch(scenarios: SimulatorState) -> LogBatch:
  """The :class:`LogBatch` of scenarios (any batch shape)."""
  return LogBatch(scenarios.log_trajectory, scenarios.object_metadata.object_types)


def noised_inputs(vocab: TokenVocabulary, inputs: ReferenceInputs, logs: LogBatch,
                  rng: jax.Array, top_k: int, prob: float
                  ) -> tuple[ReferenceInputs, jax.Array]:
  """Inputs re-tokenised with noise, and the correcting targets ``(..., N, L)``.

  Every token is, with probability ``prob``, one of its ``top_k`` nearest instead of the
  nearest (``tokenize(noise_...)``); positions, map and agents are unchanged.
  """
  tok = tokenize(vocab, logs.trajectory, logs.object_types, noise_rng=rng,
                 noise_top_k=top_k, noise_prob=prob)
  if tok.token_ids.shape != inputs.token_ids.shape:
    raise ValueError(f'the logs tokenise to {tok.token_ids.shape} tokens, the inputs hold '
                     f'{inputs.token_ids.shape}; pass the logs the inputs were made from.')
  return inputs.replace(token_ids=tok.token_ids, token_poses=tok.poses), tok.target_ids


def _loss_fn(config: ReferenceConfig, label_smoothing: float, params: Any,
             inputs: ReferenceInputs, rng: jax.Array, valid: Optional[jax.Array] = None,
             targets: Optional[jax.Array] = None
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
  log_probs = reference_log_probs(config, params, inputs, deterministic=False, rng=rng)
  valid = position_valid(inputs) if valid is None else valid
  return next_token_loss(log_probs, inputs.token_ids, valid,
                         label_smoothing=label_smoothing, targets=targets)


def _apply(state: TrainState, optimizer: optax.GradientTransformation, grads: Any,
           metrics: dict) -> tuple[TrainState, dict]:
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = dict(metrics, grad_norm=optax.tree.norm(grads))
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def make_train_step(config: ReferenceConfig, optimizer: optax.GradientTransformation,
                    label_smoothing: float = 0.1, *, vocab: Optional[TokenVocabulary] = None,
                    noise_top_k: int = 1, noise_prob: float = 0.0) -> Callable:
  """``train_step(state, inputs[, logs]) -> (state, metrics)`` (jit it; donate the state).

  ``inputs`` is a batch ``(B,)`` of :class:`ReferenceInputs`; dropout keys come from
  ``fold_in(state.rng, state.step)``, so a resumed run repeats the same randomness.
  With ``noise_prob > 0`` (needs ``vocab``) the step also takes the batch's
  :class:`LogBatch` and trains on a freshly noised tokenisation of it every step
  (:func:`noised_inputs`): drifted histories with correcting targets, so the model
  learns to steer back, which teacher forcing on exact logs never shows it.
  """
  if noise_prob > 0 and vocab is None:
    raise ValueError('noised tokenisation (noise_prob > 0) needs the vocabulary')

  def train_step(state: TrainState, inputs: ReferenceInputs,
                 logs: Optional[LogBatch] = None) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    targets = None
    if noise_prob > 0:
      if logs is None:
        raise ValueError('a noised train step needs the LogBatch of its inputs')
      inputs, targets = noised_inputs(vocab, inputs, logs, jax.random.fold_in(rng, 1),
                                      noise_top_k, noise_prob)
    grad_fn = jax.value_and_grad(
        lambda p: _loss_fn(config, label_smoothing, p, inputs, rng, targets=targets),
        has_aux=True)
    (_, metrics), grads = grad_fn(state.params)
    return _apply(state, optimizer, grads, metrics)
  return train_step


def eval_step(config: ReferenceConfig, params: Any, inputs: ReferenceInputs
              ) -> dict[str, jax.Array]:
  """Teacher-forced NLL (nats/token), top-1 / top-5 accuracy and target count.

  Sums over the batch are returned as ``*_sum`` with ``num_targets`` so that the host
  can combine chunks exactly.
  """
  log_probs = reference_log_probs(config, params, inputs)
  _, m = next_token_loss(log_probs, inputs.token_ids, position_valid(inputs),
                         label_smoothing=0.0)
  count = m['num_targets']
  return {'nll_sum': m['nll'] * count, 'top1_sum': m['accuracy_top1'] * count,
          'top5_sum': m['accuracy_top5'] * count, 'num_targets': count}


def rollout_errors(result: RolloutResult, num_steps: int, steps_per_token: int,
                   current_step: int) -> dict[str, jax.Array]:
  """Per-agent closed-loop figures of one rollout, batch ``(...)``.

  Returns ``ade (..., N)`` (mean displacement from the log over the rolled-out steps
  where both are valid, metres), ``ade_valid (..., N)``, ``collided (..., N)`` and
  ``offroad (..., N)`` (any overlap / off-road during the rollout) and ``controlled``.
  """
  state = result.final_state
  sim, log = state.sim_trajectory, state.log_trajectory
  first, last = current_step + 1, current_step + num_steps * steps_per_token
  window = (jnp.arange(log.num_timesteps) >= first) & (jnp.arange(log.num_timesteps) <= last)
  both = sim.valid & log.valid & window
  dist = jnp.hypot(sim.x - log.x, sim.y - log.y)
  count = jnp.sum(both, -1)
  ade = jnp.sum(jnp.where(both, dist, 0.0), -1) / jnp.maximum(count, 1)
  controlled = state.object_metadata.is_controlled
  out = {'ade': ade, 'ade_valid': (count > 0) & controlled, 'controlled': controlled}
  for name, key in (('overlap', 'collided'), ('offroad', 'offroad')):
    if name in result.metrics:
      m = result.metrics[name]
      hit = jnp.any((m.value > 0) & m.valid, axis=(-3, -2))
      out[key] = hit & controlled
  return out


def closed_loop_metrics(config: ReferenceConfig, params: Any, vocab: TokenVocabulary,
                        token_env: TokenEnvironment, scenarios: SimulatorState,
                        rng: jax.Array, *, num_samples: int = 4, num_steps: int = 40,
                        top_k: int = 32, temperature: float = 1.0) -> dict[str, jax.Array]:
  """Sums for minADE / collision / off-road over ``num_samples`` rollouts (jittable).

  ``scenarios`` has batch ``(B,)``; the environment must compute ``overlap`` and
  ``offroad``. Returns sums and counts (``min_ade_sum``, ``ade_agents``,
  ``collided_sum``, ``offroad_sum``, ``agent_samples``) for the host to combine;
  rates are over controlled agents and samples.
  """
  select = sampling_selector(top_k, temperature)
  current = token_env.env.config.init_steps - 1

  def one(key):
    result = rollout_with_selector(config, params, vocab, token_env, scenarios, key, select,
                                   num_steps)
    return rollout_errors(result, num_steps, vocab.steps_per_token, current)

  per = jax.lax.map(one, jax.random.split(rng, num_samples))  # leading sample axis
  ade_valid = jnp.all(per['ade_valid'], 0)
  min_ade = jnp.min(jnp.where(per['ade_valid'], per['ade'], jnp.inf), 0)
  controlled = per['controlled'][0].astype(jnp.float32)
  f32 = lambda a: a.astype(jnp.float32)
  return {'min_ade_sum': jnp.sum(jnp.where(ade_valid, min_ade, 0.0)),
          'ade_agents': jnp.sum(f32(ade_valid)),
          'collided_sum': jnp.sum(f32(per['collided'])),
          'offroad_sum': jnp.sum(f32(per['offroad'])),
          'agent_samples': jnp.sum(controlled) * num_samples}


def catk_inputs(config: ReferenceConfig, params: Any, vocab: TokenVocabulary,
                token_env: TokenEnvironment, scenarios: SimulatorState, *, top_k: int = 32,
                num_steps: Optional[int] = None) -> tuple[ReferenceInputs, jax.Array]:
  """The CAT-K training sequence of a batch of scenarios (no gradient flows through it).

  Returns ``(inputs, valid)``: the rollout's own tokens and poses as ``ReferenceInputs``
  (history + ``num_steps`` positions; default all remaining) and the positions that
  count as targets (valid and matched to a logged motion).
  """
  s = vocab.steps_per_token
  t0 = token_env.env.config.init_steps - 1
  if num_steps is None:
    num_steps = (scenarios.log_trajectory.num_timesteps - 1 - t0) // s
  params = jax.lax.stop_gradient(params)
  result = rollout_with_selector(config, params, vocab, token_env, scenarios,
                                 jax.random.key(0), catk_selector(vocab, top_k), num_steps)
  state = result.final_state
  inputs = build_reference_inputs(state, result.token_ids, result.token_poses,
                                  result.token_valid, config=config)
  return inputs, position_valid(inputs) & result.target_ok


def make_catk_train_step(config: ReferenceConfig, optimizer: optax.GradientTransformation,
                         vocab: TokenVocabulary, token_env: TokenEnvironment, *,
                         top_k: int = 32, label_smoothing: float = 0.1,
                         num_steps: Optional[int] = None) -> Callable:
  """``catk_step(state, scenarios) -> (state, metrics)``: closed-loop fine-tuning step."""
  def catk_step(state: TrainState, scenarios: SimulatorState) -> tuple[TrainState, dict]:
    inputs, valid = catk_inputs(config, state.params, vocab, token_env, scenarios,
                                top_k=top_k, num_steps=num_steps)
    rng = jax.random.fold_in(state.rng, state.step)
    grad_fn = jax.value_and_grad(
        lambda p: _loss_fn(config, label_smoothing, p, inputs, rng, valid), has_aux=True)
    (_, metrics), grads = grad_fn(state.params)
    metrics = dict(metrics, matched_fraction=jnp.sum(valid) / jnp.maximum(
        jnp.sum(position_valid(inputs)), 1))
    return _apply(state, optimizer, grads, metrics)
  return catk_step


def tokens_per_batch(inputs: ReferenceInputs) -> int:
  """Static token positions in a batch (agents x positions x scenarios)."""
  return int(math.prod(inputs.token_ids.shape))


__all__ = ['LogBatch', 'TrainState', 'catk_inputs', 'closed_loop_metrics', 'eval_step',
           'init_train_state', 'log_batch', 'make_catk_train_step', 'make_inputs',
           'make_optimizer', 'make_train_step', 'noised_inputs',
           'rollout_errors', 'tokens_per_batch']
