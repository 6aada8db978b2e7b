"""Closed-loop autoregressive rollout of every agent with the reference model.

From the current step of WOMD (step ``init_steps - 1`` = 10) the reference model drives
every controlled agent one token at a time: the history positions come from the
tokenised log, then at each token step the next token of every agent is drawn from the
model's distribution (temperature, top-k), executed by the :class:`TokenEnvironment`
(``S`` simulator steps), and the executed token with its start and end poses is fed
back into the model's decode cache. Objects the environment does not control replay the
log and enter the model with the token that best follows their log.

Everything is pure JAX over any leading batch shape ``(...)``; :func:`reference_rollout`
is jitted (config, token environment, step count and sampling settings are static), so
it serves directly as a batched sim-agent policy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.models.api import build_reference_inputs, decode_step, init_decode
from spacer_jax.models.config import ReferenceConfig
from spacer_jax.sim.datatypes import SimulatorState
from spacer_jax.sim.metrics.base import MetricResult
from spacer_jax.tokens.feasibility import (
  feasible_next_tokens,
  restrict_log_probs,
  start_from_current_motion,
)
from spacer_jax.tokens.token_env import TokenEnvironment
from spacer_jax.tokens.tokenize import match_tokens, token_corners, tokenize
from spacer_jax.tokens.vocabulary import TokenVocabulary, agent_type_index

# Selects each agent's next token: (log_probs (..., N, K), state, rng) ->
# (token_ids (..., N) int32, target_ok (..., N) bool).
Selector = Callable[[jax.Array, SimulatorState, jax.Array], tuple[jax.Array, jax.Array]]


@struct.dataclass
class RolloutResult:
  """A closed-loop rollout; ``H`` history positions, ``R = num_steps`` rolled-out ones.

  Attributes:
    final_state: the ``SimulatorState`` after ``R`` token steps (timestep
      ``init_steps - 1 + R S``); its ``sim_trajectory`` holds the log up to the current
      step and the simulation after it (91 steps, -1/invalid beyond the rollout).
    token_ids: ``(..., N, H + R)`` int32, the model's input sequence: the tokenised
      history, then the executed tokens.
    token_poses: ``(..., N, H + R + 1, 3)`` poses at token boundaries (world frame).
    token_valid: ``(..., N, H + R)`` bool.
    target_ok: ``(..., N, H + R)`` bool: the selector's per-step flag (always True in
      the history; for CAT-K whether a logged motion was available to match).
    log_probs: ``(..., N, R)`` float32 log-probability of each executed token under the
      model (0 where the agent's position is invalid).
    metrics: the environment's metrics after every simulator step, value and valid
      ``(..., R, S, N)``.
  """

  final_state: SimulatorState
  token_ids: jax.Array
  token_poses: jax.Array
  token_valid: jax.Array
  target_ok: jax.Array
  log_probs: jax.Array
  metrics: dict[str, MetricResult]


def _pose(traj) -> jax.Array:
  return jnp.stack([traj.x, traj.y, traj.yaw], -1)[..., 0, :]


# A decoding setting: one value for every agent, or one per agent type (vehicle,
# pedestrian, cyclist: the vocabulary's type order).
PerType = Any


def per_type(value: PerType, name: str) -> tuple:
  """``value`` as a (vehicle, pedestrian, cyclist) tuple; a scalar applies to all three.

  Raises:
    ValueError: a sequence that does not have three entries.
  """
  if isinstance(value, (tuple, list)):
    if len(value) != 3:
      raise ValueError(f'{name}={value!r}: one value, or three (vehicle, pedestrian, '
                       'cyclist)')
    return tuple(value)
  return (value,) * 3


def sample_tokens(log_probs: jax.Array, rng: jax.Array, top_k: PerType,
                  temperature: PerType, object_types: Optional[jax.Array] = None
                  ) -> jax.Array:
  """Draws one token per row of ``log_probs (..., K)`` among its ``top_k`` most likely.

  ``top_k = 1`` is greedy (no randomness). ``top_k`` and ``temperature`` may each be a
  (vehicle, pedestrian, cyclist) tuple, with ``object_types (...)`` (WOMD types) saying
  which applies to each row. Returns ``(...)`` int32.
  """
  num_tokens = log_probs.shape[-1]
  scalar = not isinstance(top_k, (tuple, list)) and not isinstance(temperature, (tuple, list))
  if not scalar and object_types is None:
    raise ValueError('per-type top_k / temperature need the object types of the rows')
  ks = tuple(min(int(k), num_tokens) for k in per_type(top_k, 'top_k'))
  if max(ks) == 1:
    return jnp.argmax(log_probs, axis=-1).astype(jnp.int32)  # Greedy for every type.
  temps = per_type(temperature, 'temperature')
  values, index = jax.lax.top_k(log_probs, max(ks))
  t = (jnp.zeros(log_probs.shape[:-1], jnp.int32) if scalar
       else agent_type_index(object_types))
  k_row = jnp.asarray(ks, jnp.int32)[t]
  temp_row = jnp.asarray(temps, jnp.float32)[t]
  # Only the row's own top-k stay; a row at k = 1 has one finite entry (greedy).
  keep = jnp.arange(values.shape[-1]) < k_row[..., None]
  scaled = jnp.where(keep, values / temp_row[..., None], -jnp.inf)
  choice = jax.random.categorical(rng, scaled, axis=-1)
  return jnp.take_along_axis(index, choice[..., None], -1)[..., 0].astype(jnp.int32)


def sampling_selector(top_k: int, temperature: float) -> Selector:
  """The sim-agent selector: temperature and top-k sampling from the model."""
  def select(log_probs, state, rng):
    del state
    ids = sample_tokens(log_probs, rng, top_k, temperature)
    return ids, jnp.ones(ids.shape, bool)
  return select


def closest_to_log_among_top_k(vocab: TokenVocabulary, log_probs: jax.Array,
                               state: SimulatorState, top_k: int
                               ) -> tuple[jax.Array, jax.Array]:
  """CAT-K target selection: among each agent's ``top_k`` most likely tokens, the one whose
  executed box corners are closest to the logged motion from the current simulated pose.

  Args:
    vocab: the vocabulary.
    log_probs: ``(..., N, K)`` the model's next-token distribution.
    state: batch ``(...)`` at a token boundary.
    top_k: candidate set size (static).

  Returns:
    ``(token_ids (..., N) int32, has_log (..., N) bool)``. Where the log lacks the next
    ``S`` steps the most likely token is returned and ``has_log`` is False.
  """
  s = vocab.steps_per_token
  k = min(int(top_k), log_probs.shape[-1])
  _, candidates = jax.lax.top_k(log_probs, k)  # (..., N, k)
  current = state.current_sim_trajectory
  steps = state.timestep[..., None] + 1 + jnp.arange(s)  # (..., S)
  steps_c = jnp.clip(steps, 0, state.log_trajectory.num_timesteps - 1)
  log = state.log_trajectory
  take = lambda a: jnp.take_along_axis(
      a, jnp.broadcast_to(steps_c[..., None, :], (*a.shape[:-1], s)), -1)
  target = jnp.stack([take(log.x), take(log.y), take(log.yaw)], -1)  # (..., N, S, 3)
  in_range = jnp.all(steps < log.num_timesteps, -1)[..., None]
  has_log = current.valid[..., 0] & take(log.valid).all(-1) & in_range
  type_index = agent_type_index(state.object_metadata.object_types)
  length, width = current.length[..., 0], current.width[..., 0]
  corners = token_corners(vocab, type_index, length, width)  # (..., N, K, S, 4, 2)
  cand = jnp.take_along_axis(corners, candidates[..., None, None, None], axis=-4)
  best, _ = match_tokens(cand, _pose(current), target, length, width)
  chosen = jnp.take_along_axis(candidates, best[..., None], -1)[..., 0]
  ids = jnp.where(has_log, chosen, candidates[..., 0])
  return ids.astype(jnp.int32), has_log


def catk_selector(vocab: TokenVocabulary, top_k: int) -> Selector:
  """The CAT-K selector (see :func:`closest_to_log_among_top_k`)."""
  def select(log_probs, state, rng):
    del rng
    return closest_to_log_among_top_k(vocab, log_probs, state, top_k)
  return select


def rollout_with_selector(config: ReferenceConfig, params: Any, vocab: TokenVocabulary,
                          token_env: TokenEnvironment, state: SimulatorState,
                          rng: jax.Array, select: Selector, num_steps: int,
                          forced_tokens: Optional[jax.Array] = None,
                          feasible: bool = True) -> RolloutResult:
  """The rollout loop with any token selector (not jitted; see :func:`reference_rollout`).

  Args:
    state: batch ``(...)``; it is reset here (the episode starts at
      ``init_steps - 1``, which must be a multiple of S).
    forced_tokens: optional ``(..., N, num_steps)`` ids executed instead of the
      selector's (e.g. the tokenised log, to check the loop).
    feasible: the selector sees each object's distribution restricted to the tokens
      within its speed-change bound (``tokens.feasibility``), and objects without a
      valid last history token start from the token continuing their current motion;
      CAT-K targets are then physically possible too. ``log_probs`` of the result stay
      the model's own.
  """
  s = vocab.steps_per_token
  if vocab.num_tokens != config.num_tokens or vocab.num_tokens != token_env.vocab.num_tokens:
    raise ValueError(f'vocabulary has {vocab.num_tokens} tokens, the model predicts '
                     f'{config.num_tokens} and the token environment executes '
                     f'{token_env.vocab.num_tokens}; they must agree.')
  t0 = token_env.env.config.init_steps - 1
  if t0 % s:
    raise ValueError(f'the current step {t0} (init_steps - 1) must be a multiple of the '
                     f'{s} steps per token.')
  hist = t0 // s
  num_t = state.log_trajectory.num_timesteps
  max_steps = (num_t - 1 - t0) // s
  if not 1 <= num_steps <= max_steps:
    raise ValueError(f'num_steps={num_steps} must be in [1, {max_steps}] for a log of '
                     f'{num_t} steps starting at step {t0}.')
  batch, n = state.shape, state.num_objects
  if forced_tokens is not None and forced_tokens.shape != (*batch, n, num_steps):
    raise ValueError(f'forced_tokens has shape {forced_tokens.shape}, expected '
                     f'{(*batch, n, num_steps)}.')

  types = state.object_metadata.object_types
  tok = tokenize(vocab, state.log_trajectory, types)
  hist_ids, hist_poses = tok.token_ids[..., :hist], tok.poses[..., :hist + 1, :]
  hist_valid = tok.valid[..., :hist]
  state = token_env.reset(state)
  # The last history boundary is the simulated (= logged) pose at the current step, where
  # the first rolled-out token starts, so the sequence is self-consistent: a teacher-forced
  # pass over the returned tokens and poses sees what the decoder saw.
  now = state.current_sim_trajectory
  hist_poses = hist_poses.at[..., hist, :].set(
      jnp.where(now.valid[..., 0, None], _pose(now), hist_poses[..., hist, :]))
  inputs = build_reference_inputs(state, hist_ids, hist_poses, hist_valid, config=config)
  dec = init_decode(config, params, inputs, max_len=hist + num_steps)

  move = lambda a, axis: jnp.moveaxis(a, axis, 0)

  def history_body(d, xs):
    position, ids, start, end, ok = xs
    log_probs, d = decode_step(config, params, d, position, ids, start, end, ok)
    return d, log_probs

  positions = jnp.arange(hist, dtype=jnp.int32)
  dec, hist_lp = jax.lax.scan(
      history_body, dec,
      (positions, move(hist_ids, -1), move(hist_poses[..., :-1, :], -2),
       move(hist_poses[..., 1:, :], -2), move(hist_valid, -1)))
  log_probs = hist_lp[-1]  # (..., N, K): the distribution of token ``hist``.
  first_log_probs = log_probs
  if feasible:
    first_log_probs = start_from_current_motion(vocab, state, log_probs, hist_valid[..., -1])

  controlled = state.object_metadata.is_controlled
  forced = (jnp.zeros((num_steps, *batch, n), jnp.int32) if forced_tokens is None
            else move(jnp.asarray(forced_tokens, jnp.int32), -1))

  def body(carry, xs):
    sim, d, lp, choose_from = carry
    i, key, force = xs
    if feasible:
      choose_from = restrict_log_probs(choose_from, feasible_next_tokens(vocab, sim))
    ids, ok = select(choose_from, sim, key)
    if forced_tokens is not None:
      ids = force
    expert, _ = token_env.expert_tokens(sim)
    ids = jnp.where(controlled, ids, expert)
    start = _pose(sim.current_sim_trajectory)
    start_valid = sim.current_sim_trajectory.valid[..., 0]
    chosen_lp = jnp.take_along_axis(lp, ids[..., None], -1)[..., 0]
    sim, metrics = token_env.step(sim, ids)
    end = _pose(sim.current_sim_trajectory)
    valid = start_valid & sim.current_sim_trajectory.valid[..., 0]
    lp, d = decode_step(config, params, d, hist + i, ids, start, end, valid)
    out = (ids, end, valid, ok, jnp.where(valid, chosen_lp, 0.0), metrics)
    return (sim, d, lp, lp), out

  keys = jax.random.split(rng, num_steps)
  steps = jnp.arange(num_steps, dtype=jnp.int32)
  (state, _, _, _), (ids, ends, valid, ok, chosen_lp, metrics) = jax.lax.scan(
      body, (state, dec, log_probs, first_log_probs), (steps, keys, forced))
  back = lambda a, axis: jnp.moveaxis(a, 0, axis)
  ids, ends, valid, ok = back(ids, -1), back(ends, -2), back(valid, -1), back(ok, -1)
  metrics = jax.tree.map(lambda a: back(a, -3), metrics)  # (..., R, S, N)
  return RolloutResult(
      final_state=state,
      token_ids=jnp.concatenate([hist_ids, ids], -1),
      token_poses=jnp.concatenate([hist_poses, ends], -2),
      token_valid=jnp.concatenate([hist_valid, valid], -1),
      target_ok=jnp.concatenate([jnp.ones_like(hist_valid), ok], -1),
      log_probs=back(chosen_lp, -1),
      metrics=metrics)


def _reference_rollout(config: ReferenceConfig, params: Any, vocab: TokenVocabulary,
                       token_env: TokenEnvironment, state: SimulatorState, rng: jax.Array,
                       *, num_steps: int = 40, top_k: int = 32, temperature: float = 1.0,
                       forced_tokens: Optional[jax.Array] = None,
                       feasible: bool = True) -> RolloutResult:
  if temperature <= 0:
    raise ValueError(f'temperature must be > 0 (use top_k=1 for greedy), got {temperature}')
  if top_k < 1:
    raise ValueError(f'top_k must be >= 1, got {top_k}')
  return rollout_with_selector(config, params, vocab, token_env, state, rng,
                               sampling_selector(top_k, temperature), num_steps,
                               forced_tokens, feasible)


_STATIC = ('config', 'token_env', 'num_steps', 'top_k', 'temperature', 'feasible')

reference_rollout = jax.jit(_reference_rollout, static_argnames=_STATIC)
reference_rollout.__doc__ = """Rolls out every controlled agent with the reference model (jitted).

  ``reference_rollout(config, params, vocab, token_env, state, rng, *, num_steps=40,
  top_k=32, temperature=1.0, forced_tokens=None, feasible=True) -> RolloutResult``

  Args:
    config: the model's ``ReferenceConfig`` (static).
    params: its variables.
    vocab: the token vocabulary it predicts (the same as ``token_env.vocab``).
    token_env: the ``TokenEnvironment`` that executes tokens (static); its
      ``EnvConfig`` decides which objects are controlled and which metrics are kept.
    state: ``SimulatorState`` with any batch shape ``(...)``; it is reset here.
    rng: PRNG key; the same key gives the same rollout.
    num_steps: token steps (static); 40 covers WOMD's 8 s future.
    top_k: sample among the ``top_k`` most likely tokens (1 = greedy).
    temperature: divides the log-probabilities before sampling (> 0).
    forced_tokens: optional ``(..., N, num_steps)`` ids to execute instead.
    feasible: physically possible motion only (static; see
      :func:`rollout_with_selector`).
  """


def rollout_fn(config: ReferenceConfig, vocab: TokenVocabulary, token_env: TokenEnvironment,
               *, num_steps: int = 40, top_k: int = 32, temperature: float = 1.0,
               feasible: bool = True, jit_options: Optional[dict] = None) -> Callable:
  """A compiled ``(params, state, rng) -> RolloutResult`` with everything else fixed."""
  fn = functools.partial(_reference_rollout, config, vocab=vocab, token_env=token_env,
                         num_steps=num_steps, top_k=top_k, temperature=temperature,
                         feasible=feasible)
  return jax.jit(lambda params, state, rng: fn(params, state=state, rng=rng),
                 compiler_options=jit_options)


__all__ = ['RolloutResult', 'Selector', 'catk_selector', 'closest_to_log_among_top_k',
           'per_type', 'reference_rollout', 'rollout_fn', 'rollout_with_selector',
           'sample_tokens',
           'sampling_selector']
