"""Tokenising trajectories and executing tokens (pure JAX: jit, vmap, any batch shape).

Tokenising rolls forward from the *reconstructed* pose: token ``l`` is matched from the
pose where token ``l - 1`` actually ended, not from the logged pose, so the nearest
token also corrects the previous token's error and errors do not accumulate. A token is
invalid when its start or any of its sub-steps is missing from the log; the next valid
token restarts from the logged pose.

Distances are mean box-corner distances in metres (4 corners x S sub-steps), with each
agent's own length and width, between the executed token and the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from spacer_jax.sim import geometry
from spacer_jax.sim.datatypes import TIMESTEP_SECONDS, SimulatorState, Trajectory
from spacer_jax.tokens.vocabulary import (
    NUM_AGENT_TYPES,
    TYPE_NAMES,
    TokenVocabulary,
    agent_type_index,
)


@struct.dataclass
class Tokenized:
  """A tokenised trajectory; ``L = (T - 1 - start_step) // S`` tokens per object.

  Token ``l`` spans steps ``start_step + l S -> start_step + (l + 1) S``.

  Attributes:
    token_ids: ``(..., N, L)`` int32 (0 where invalid).
    valid: ``(..., N, L)`` bool: the log holds the token's start and every sub-step.
    poses: ``(..., N, L + 1, 3)`` float32 (x m, y m, yaw rad) at token boundaries.
      Boundary 0 is the logged pose at ``start_step``; boundary ``l + 1`` is the pose
      after executing token ``l`` from the reconstruction. Where token ``l`` is
      invalid, boundary ``l + 1`` holds the logged pose if the log has it (the pose a
      later token restarts from), else 0.
    error: ``(..., N, L)`` float32 mean corner distance (m) between the executed token's
      sub-steps and the log; 0 where invalid.
    target_ids: ``(..., N, L)`` int32 the token nearest to the log from each token's
      executed start pose. Equal to ``token_ids`` unless the tokenisation was noised
      (then ``token_ids`` were sampled and ``target_ids`` are the corrections back
      toward the log that a model should learn).
  """

  token_ids: jax.Array
  valid: jax.Array
  poses: jax.Array
  error: jax.Array
  target_ids: jax.Array


def _pose_corners(poses: jax.Array, length: jax.Array, width: jax.Array) -> jax.Array:
  """Corners ``(..., 4, 2)`` of poses ``(..., 3)``; sizes broadcast to ``(...)``."""
  return geometry.box_corners(poses[..., 0], poses[..., 1], length, width, poses[..., 2])


def token_corners(vocab: TokenVocabulary, type_index: jax.Array, length: jax.Array,
                  width: jax.Array) -> jax.Array:
  """Every token's local corners with each agent's size: ``(..., K, S, 4, 2)``.

  ``type_index``, ``length`` and ``width`` are ``(...)``.
  """
  poses = vocab.poses[type_index]  # (..., K, S, 3)
  return _pose_corners(poses, length[..., None, None], width[..., None, None])


def match_tokens(corners: jax.Array, start_pose: jax.Array, target_poses: jax.Array,
                 length: jax.Array, width: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Nearest token to a target motion from a start pose.

  Args:
    corners: ``(..., K, S, 4, 2)`` from :func:`token_corners`.
    start_pose: ``(..., 3)`` world (x, y, yaw).
    target_poses: ``(..., S, 3)`` world poses of the S sub-steps to reproduce.
    length, width: ``(...)`` box size, metres.

  Returns:
    ``(token_ids (...) int32, error (...) float32)``: the argmin over tokens of the
    mean corner distance and that distance in metres.
  """
  dist = _token_distances(corners, start_pose, target_poses, length, width)
  ids = jnp.argmin(dist, axis=-1).astype(jnp.int32)
  return ids, jnp.take_along_axis(dist, ids[..., None], -1)[..., 0]


def _token_distances(corners: jax.Array, start_pose: jax.Array, target_poses: jax.Array,
                     length: jax.Array, width: jax.Array) -> jax.Array:
  """``(..., K)`` mean corner distance (m) of every token to the target motion."""
  origin_xy, origin_yaw = start_pose[..., None, :2], start_pose[..., None, 2]
  local = jnp.concatenate([
      geometry.world_to_local(target_poses[..., :2], origin_xy, origin_yaw),
      (target_poses[..., 2] - origin_yaw)[..., None]], -1)
  target = _pose_corners(local, length[..., None], width[..., None])  # (..., S, 4, 2)
  return jnp.linalg.norm(corners - target[..., None, :, :, :], axis=-1).mean((-1, -2))


def execute_token(vocab: TokenVocabulary, pose: jax.Array, type_index: jax.Array,
                  token_id: jax.Array) -> tuple[jax.Array, jax.Array]:
  """World-frame sub-step poses and velocities of executing a token from ``pose``.

  Args:
    vocab: the vocabulary.
    pose: ``(..., 3)`` start (x m, y m, yaw rad), world frame.
    type_index: ``(...)`` int, 0 vehicle, 1 pedestrian, 2 cyclist.
    token_id: ``(...)`` int in ``[0, K)``.

  Returns:
    ``(poses (..., S, 3), velocities (..., S, 2))``: yaw wrapped to [-pi, pi);
    velocity of sub-step s = (position_s - position_{s-1}) / 0.1 s (m/s).
  """
  pose = jnp.asarray(pose, jnp.float32)
  local = vocab.poses[type_index, token_id]  # (..., S, 3)
  xy = geometry.local_to_world(local[..., :2], pose[..., None, :2], pose[..., None, 2])
  yaw = geometry.wrap_angle(local[..., 2] + pose[..., None, 2])
  previous = jnp.concatenate([pose[..., None, :2], xy[..., :-1, :]], axis=-2)
  velocity = (xy - previous) / TIMESTEP_SECONDS
  return jnp.concatenate([xy, yaw[..., None]], -1), velocity


def _first_valid(values: jax.Array, valid: jax.Array) -> jax.Array:
  """The value at each object's first valid step ``(..., N)`` (0 if never valid)."""
  index = jnp.argmax(valid, axis=-1)
  first = jnp.take_along_axis(values, index[..., None], -1)[..., 0]
  return jnp.where(valid.any(-1), first, 0.0)


def num_tokens_in(num_timesteps: int, steps_per_token: int, start_step: int = 0) -> int:
  """``L = (T - 1 - start_step) // S``."""
  return (num_timesteps - 1 - start_step) // steps_per_token


def tokenize(vocab: TokenVocabulary, trajectory: Trajectory, object_types: jax.Array,
             start_step: int = 0, *, noise_rng: jax.Array | None = None,
             noise_top_k: int = 1, noise_prob: float = 0.0) -> Tokenized:
  """Tokenises a (logged or simulated) trajectory, rolling forward from reconstruction.

  Noised tokenisation (SMART's recipe for closed-loop robustness): with ``noise_rng``,
  each token is, with probability ``noise_prob``, drawn uniformly among the
  ``noise_top_k`` tokens nearest to the log instead of the nearest one. The
  reconstruction then drifts off the log like a sampled rollout does, and
  ``target_ids`` holds, from every drifted pose, the nearest token: the correction a
  model trained on these sequences learns to predict.

  Args:
    vocab: the vocabulary (K tokens of S steps per type).
    trajectory: ``(..., N, T)``.
    object_types: ``(..., N)`` WOMD object types (see ``agent_type_index``).
    start_step: first step (static int); token 0 starts there.
    noise_rng: PRNG key; None (default) tokenises exactly.
    noise_top_k: candidates a noised token is drawn from (static, <= K).
    noise_prob: probability that a token is noised.

  Returns:
    A :class:`Tokenized` with ``L = (T - 1 - start_step) // S`` tokens.

  Raises:
    ValueError: when ``object_types`` does not match the trajectory's ``(..., N)`` or
      fewer than S steps follow ``start_step``.
  """
  s = vocab.steps_per_token
  num_t = trajectory.num_timesteps
  num_l = num_tokens_in(num_t, s, start_step)
  if start_step < 0 or num_l < 1:
    raise ValueError(f'tokenize: start_step={start_step} leaves no whole token of {s} steps '
                     f'in a trajectory of {num_t} steps.')
  object_types = jnp.asarray(object_types)
  if tuple(object_types.shape) != tuple(trajectory.shape[:-1]):
    raise ValueError(f'tokenize: object_types has shape {object_types.shape}, expected '
                     f'{trajectory.shape[:-1]} (the trajectory\'s (..., num_objects)).')
  steps = np.arange(start_step, start_step + num_l * s + 1)
  pose = jnp.stack([trajectory.x, trajectory.y, trajectory.yaw], -1)[..., steps, :]
  valid = trajectory.valid[..., steps]
  lead = pose.shape[:-2]  # (..., N)
  boundary = pose[..., ::s, :]  # (..., N, L + 1, 3)
  boundary_valid = valid[..., ::s]
  sub = pose[..., 1:, :].reshape(lead + (num_l, s, 3))
  token_valid = boundary_valid[..., :-1] & valid[..., 1:].reshape(lead + (num_l, s)).all(-1)

  length = _first_valid(trajectory.length, trajectory.valid)
  width = _first_valid(trajectory.width, trajectory.valid)
  type_index = agent_type_index(object_types)
  corners = token_corners(vocab, type_index, length, width)
  noised = noise_rng is not None
  if noised and not 1 <= noise_top_k <= vocab.num_tokens:
    raise ValueError(f'tokenize: noise_top_k={noise_top_k} must be in [1, '
                     f'{vocab.num_tokens}] (the vocabulary size).')
  keys = (jax.random.split(noise_rng, num_l) if noised
          else jnp.zeros((num_l,), jnp.uint32))

  def body(carry, xs):
    recon, have_recon = carry
    log_start, target, ok, log_end, log_end_ok, key = xs
    start = jnp.where(have_recon[..., None], recon, log_start)
    dist = _token_distances(corners, start, target, length, width)
    best = jnp.argmin(dist, axis=-1).astype(jnp.int32)
    ids = best
    if noised:
      pick_key, flip_key = jax.random.split(key)
      _, nearest = geometry.smallest_k(dist, noise_top_k)
      choice = jax.random.randint(pick_key, best.shape, 0, noise_top_k)
      drawn = jnp.take_along_axis(nearest, choice[..., None], -1)[..., 0].astype(jnp.int32)
      ids = jnp.where(jax.random.bernoulli(flip_key, noise_prob, best.shape), drawn, best)
    err = jnp.take_along_axis(dist, ids[..., None], -1)[..., 0]
    end = execute_token(vocab, start, type_index, ids)[0][..., -1, :]
    after = jnp.where(ok[..., None], end, jnp.where(log_end_ok[..., None], log_end, 0.0))
    out = (jnp.where(ok, ids, 0), jnp.where(ok, best, 0), after, jnp.where(ok, err, 0.0))
    return (jnp.where(ok[..., None], end, recon), ok), out

  time_major = lambda a, axis: jnp.moveaxis(a, axis, 0)
  xs = (time_major(boundary[..., :-1, :], -2), time_major(sub, -3),
        time_major(token_valid, -1), time_major(boundary[..., 1:, :], -2),
        time_major(boundary_valid[..., 1:], -1), keys)
  init = (jnp.zeros(lead + (3,), jnp.float32), jnp.zeros(lead, bool))
  _, (ids, best, after, err) = jax.lax.scan(body, init, xs)
  first = jnp.where(boundary_valid[..., :1, None], boundary[..., :1, :], 0.0)
  poses = jnp.concatenate([first, jnp.moveaxis(after, 0, -2)], axis=-2)
  return Tokenized(token_ids=jnp.moveaxis(ids, 0, -1), valid=token_valid,
                   poses=poses.astype(jnp.float32),
                   error=jnp.moveaxis(err, 0, -1).astype(jnp.float32),
                   target_ids=jnp.moveaxis(best, 0, -1))


def detokenize(vocab: TokenVocabulary, start_pose: jax.Array, type_index: jax.Array,
               token_ids: jax.Array, valid: jax.Array | None = None,
               boundary_poses: jax.Array | None = None) -> jax.Array:
  """Executes token sequences: world poses at every simulator step.

  Args:
    vocab: the vocabulary.
    start_pose: ``(..., N, 3)`` world (x, y, yaw) before token 0.
    type_index: ``(..., N)`` int (0 vehicle, 1 pedestrian, 2 cyclist).
    token_ids: ``(..., N, L)`` int.
    valid: optional ``(..., N, L)`` bool (default all valid).
    boundary_poses: optional ``(..., N, L + 1, 3)`` (e.g. ``Tokenized.poses``): a valid
      token after an invalid one restarts from ``boundary_poses[l]``, as
      :func:`tokenize` does; without it every token continues from the last executed
      pose.

  Returns:
    ``(..., N, L S + 1, 3)``: index 0 is ``start_pose``, index ``l S + s`` the pose
    after sub-step ``s`` of token ``l``. Sub-steps of invalid tokens hold -1.
  """
  start_pose = jnp.asarray(start_pose, jnp.float32)
  token_ids = jnp.asarray(token_ids, jnp.int32)
  type_index = jnp.asarray(type_index, jnp.int32)
  valid = jnp.ones(token_ids.shape, bool) if valid is None else jnp.asarray(valid, bool)
  lead, num_l = token_ids.shape[:-1], token_ids.shape[-1]
  restarts = boundary_poses is not None
  if boundary_poses is None:
    boundary_poses = jnp.zeros(lead + (num_l + 1, 3), jnp.float32)  # Never read.
  boundary_poses = jnp.asarray(boundary_poses, jnp.float32)
  expected = {'start_pose': (start_pose, lead + (3,)), 'type_index': (type_index, lead),
              'valid': (valid, lead + (num_l,)),
              'boundary_poses': (boundary_poses, lead + (num_l + 1, 3))}
  for name, (value, shape) in expected.items():
    if tuple(value.shape) != shape:
      raise ValueError(f'detokenize: {name} has shape {tuple(value.shape)}, expected '
                       f'{shape} for token_ids of shape {token_ids.shape}.')

  def body(carry, xs):
    pose, have = carry
    ids, ok, restart = xs
    start = jnp.where(have[..., None], pose, restart) if restarts else pose
    sub = execute_token(vocab, start, type_index, ids)[0]
    out = jnp.where(ok[..., None, None], sub, -1.0)
    return (jnp.where(ok[..., None], sub[..., -1, :], pose), ok), out

  xs = (jnp.moveaxis(token_ids, -1, 0), jnp.moveaxis(valid, -1, 0),
        jnp.moveaxis(boundary_poses[..., :-1, :], -2, 0))
  _, sub = jax.lax.scan(body, (start_pose, jnp.ones(lead, bool)), xs)  # (L, ..., N, S, 3)
  sub = jnp.moveaxis(sub, 0, -3)
  flat = sub.reshape(lead + (sub.shape[-3] * vocab.steps_per_token, 3))
  return jnp.concatenate([start_pose[..., None, :], flat], axis=-2)


def error_by_type(tokenized: Tokenized, object_types: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
  """Sums and counts of valid token errors per type: ``((3,), (3,))`` float32 / int32.

  Sum over every batch element, object and token; divide for the mean corner error.
  """
  type_index = agent_type_index(object_types)[..., None, None]  # (..., N, 1, 1)
  onehot = (type_index == jnp.arange(NUM_AGENT_TYPES)) & tokenized.valid[..., None]
  axes = tuple(range(onehot.ndim - 1))
  sums = jnp.sum(jnp.where(onehot, tokenized.error[..., None], 0.0), axis=axes)
  return sums, jnp.sum(onehot, axis=axes).astype(jnp.int32)


_jit_tokenize = jax.jit(tokenize, static_argnames='start_step')


def mean_error_by_type(vocab: TokenVocabulary, states: Iterable[SimulatorState],
                       start_step: int = 0) -> dict[str, Any]:
  """Mean tokenisation corner error (m) per type over the logs of ``states`` (host loop).

  Each state (any batch shape) is tokenised with a compiled :func:`tokenize` (one
  compile per shape). Returns ``{type name: {'mean_error_m', 'max_error_m',
  'num_tokens'}}``, plus ``'all'`` over every type.
  """
  sums = np.zeros(NUM_AGENT_TYPES)
  counts = np.zeros(NUM_AGENT_TYPES, np.int64)
  maxima = np.zeros(NUM_AGENT_TYPES)
  for state in states:
    types = state.object_metadata.object_types
    tok = _jit_tokenize(vocab, state.log_trajectory, types, start_step=start_step)
    s, c = error_by_type(tok, types)
    sums += np.asarray(s, np.float64)
    counts += np.asarray(c)
    index = np.asarray(agent_type_index(types))[..., None]
    err = np.where(np.asarray(tok.valid), np.asarray(tok.error), 0.0)
    for k in range(NUM_AGENT_TYPES):
      maxima[k] = max(maxima[k], float(np.max(np.where(index == k, err, 0.0), initial=0.0)))
  out: dict[str, Any] = {}
  for k, name in enumerate(TYPE_NAMES):
    out[name] = {'mean_error_m': float(sums[k] / max(counts[k], 1)),
                 'max_error_m': float(maxima[k]), 'num_tokens': int(counts[k])}
  out['all'] = {'mean_error_m': float(sums.sum() / max(counts.sum(), 1)),
                'max_error_m': float(maxima.max()), 'num_tokens': int(counts.sum())}
  return out
