"""Physically possible token transitions: a bound on the speed change between tokens.

Tokens carry no speed state: a vocabulary holds both a 25 m/s cruise token and a
standstill token, and nothing in a model's distribution stops a car at 25 m/s from
taking the standstill one, a stop within 0.2 s (about 125 m/s^2). Logged driving never
does that, so every decoding (reference rollouts, CAT-K target selection, SPACER's
policy and its anchor) restricts each agent's next token to those whose mean speed is
within a per-type bound of the agent's speed over its last token.

Speeds here are MEAN speeds over one token: the distance from the token's start to its
end pose over ``S * 0.1`` s. An agent's last speed is measured on its simulated poses at
the token boundaries, which for an executed token is exactly that token's speed (so
consecutive decoded tokens are compared like for like), and for the first decision is
the logged speed over the last history token.

The bounds (:data:`DEFAULT_LIMITS`) come from the data: the largest speed change
between consecutive expert tokens of generated logs (the vocabulary's quantisation
included: consecutive tokens of a steady car alternate between neighbouring speeds),
and between the logged speed over a token and the next expert token. Over 500 scenes
of the cpu generator (seeds 0-99 and 1000-1399) with the default vocabulary the
largest token-to-token changes are 5.95 m/s (vehicles; 99.9% below 3.42), 1.75
(pedestrians), 2.40 (cyclists), logged-to-token 4.21 / 1.11 / 1.78; the logs hold no
stop from >= 15 m/s within a token (``python benchmarks/token_speed_changes.py``).
The limits add a margin to those maxima: a vehicle at 25 m/s can no longer stop in
0.2 s (its standstill token needs a 25 m/s change), though the bound of 6.5 m/s per
token (32 m/s^2) is loose because of the quantisation.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from spacer_jax.sim.datatypes import TIMESTEP_SECONDS, SimulatorState, slice_time
from spacer_jax.tokens.tokenize import match_tokens, token_corners
from spacer_jax.tokens.vocabulary import TokenVocabulary, agent_type_index


@dataclasses.dataclass(frozen=True)
class SpeedChangeLimits:
  """Largest change of mean speed from one token to the next, m/s, per agent type.

  Attributes:
    vehicle, pedestrian, cyclist: the bound for tokens of ``S`` steps (0.2 s at S = 2).
  """

  vehicle: float = 6.5
  pedestrian: float = 2.5
  cyclist: float = 3.0

  def __post_init__(self):
    for name in ('vehicle', 'pedestrian', 'cyclist'):
      if not getattr(self, name) > 0:
        raise ValueError(f'SpeedChangeLimits.{name} must be > 0 m/s, got '
                         f'{getattr(self, name)}.')

  def as_array(self) -> np.ndarray:
    """``(3,)`` float32 in the vocabulary's type order (vehicle, pedestrian, cyclist)."""
    return np.array([self.vehicle, self.pedestrian, self.cyclist], np.float32)


DEFAULT_LIMITS = SpeedChangeLimits()


def token_speeds(vocab: TokenVocabulary) -> jax.Array:
  """``(3, K)`` mean speed of every token, m/s: start-to-end distance / token duration."""
  end = vocab.poses[:, :, -1, :2]
  return jnp.linalg.norm(end, axis=-1) / (vocab.steps_per_token * TIMESTEP_SECONDS)


def motion_speed(start_pose: jax.Array, end_pose: jax.Array, steps: int) -> jax.Array:
  """``(...)`` mean speed, m/s, between poses ``(..., >= 2)`` ``steps`` steps apart."""
  d = end_pose[..., :2] - start_pose[..., :2]
  return jnp.linalg.norm(d, axis=-1) / (steps * TIMESTEP_SECONDS)


def feasible_tokens(vocab: TokenVocabulary, type_index: jax.Array, last_speed: jax.Array,
                    known: jax.Array, limits: SpeedChangeLimits = DEFAULT_LIMITS
                    ) -> jax.Array:
  """``(..., K)`` bool: the tokens an agent can take next.

  Args:
    vocab: the vocabulary.
    type_index: ``(...)`` int, 0 vehicle, 1 pedestrian, 2 cyclist.
    last_speed: ``(...)`` the agent's mean speed over its last token, m/s.
    known: ``(...)`` bool, whether ``last_speed`` is known; unknown agents may take any
      token.
    limits: the per-type bounds.

  The token nearest in speed always stays feasible, so no agent is left without a move
  (e.g. faster than every token of its type).
  """
  speeds = token_speeds(vocab)[type_index]  # (..., K)
  gap = jnp.abs(speeds - last_speed[..., None])
  bound = jnp.asarray(limits.as_array())[type_index][..., None]
  nearest = jax.nn.one_hot(jnp.argmin(gap, axis=-1), vocab.num_tokens, dtype=bool)
  return (gap <= bound) | nearest | ~jnp.asarray(known, bool)[..., None]


def last_token_speed(state: SimulatorState, steps: int, back: int = 0
                     ) -> tuple[jax.Array, jax.Array]:
  """Each object's simulated mean speed over the ``steps`` steps up to ``back`` steps
  before ``state.timestep`` (``back`` 0: up to now).

  Returns ``(speed (..., N) m/s, known (..., N) bool)``: known where the object is valid
  at both ends (at the current step of a reset state, the last logged history token).
  """
  t = jnp.asarray(state.timestep)
  now = slice_time(state.sim_trajectory, jnp.maximum(t - back, 0), 1)
  before = slice_time(state.sim_trajectory, jnp.maximum(t - back - steps, 0), 1)
  xy = lambda tr: jnp.stack([tr.x[..., 0], tr.y[..., 0]], -1)
  speed = motion_speed(xy(before), xy(now), steps)
  known = (now.valid[..., 0] & before.valid[..., 0]
           & (t - back - steps >= 0)[..., None])
  return jnp.where(known, speed, 0.0), known


def feasible_next_tokens(vocab: TokenVocabulary, state: SimulatorState,
                         limits: SpeedChangeLimits = DEFAULT_LIMITS) -> jax.Array:
  """``(..., N, K)`` bool: :func:`feasible_tokens` of every object of ``state`` at its
  token boundary, from its simulated speed over the last token."""
  speed, known = last_token_speed(state, vocab.steps_per_token)
  types = agent_type_index(state.object_metadata.object_types)
  return feasible_tokens(vocab, types, speed, known, limits)


def current_motion_tokens(vocab: TokenVocabulary, state: SimulatorState) -> jax.Array:
  """``(..., N)`` int32: the token nearest to continuing each object's current motion
  (its simulated pose and velocity at ``state.timestep``, held for one token).

  The start of an agent whose last history token is missing (it appeared within the
  last token): a model has no motion of it to continue, and without this its first
  token would be drawn from a near-uniform distribution.
  """
  cur = slice_time(state.sim_trajectory, state.timestep, 1)
  x, y, yaw = cur.x[..., 0], cur.y[..., 0], cur.yaw[..., 0]
  vx, vy = cur.vel_x[..., 0], cur.vel_y[..., 0]
  t = TIMESTEP_SECONDS * jnp.arange(1, vocab.steps_per_token + 1, dtype=jnp.float32)
  target = jnp.stack([x[..., None] + vx[..., None] * t, y[..., None] + vy[..., None] * t,
                      jnp.broadcast_to(yaw[..., None], x.shape + t.shape)], -1)
  length, width = cur.length[..., 0], cur.width[..., 0]
  types = agent_type_index(state.object_metadata.object_types)
  corners = token_corners(vocab, types, length, width)
  ids, _ = match_tokens(corners, jnp.stack([x, y, yaw], -1), target, length, width)
  return ids


def start_from_current_motion(vocab: TokenVocabulary, state: SimulatorState,
                              log_probs: jax.Array, last_history_valid: jax.Array
                              ) -> jax.Array:
  """``log_probs (..., N, K)`` of the first decision, where objects valid now without a
  valid last history token get all mass on ``feasibility.current_motion_tokens``."""
  missing = state.current_sim_trajectory.valid[..., 0] & ~last_history_valid
  first = jax.nn.one_hot(current_motion_tokens(vocab, state), vocab.num_tokens, dtype=bool)
  return jnp.where(missing[..., None], jnp.where(first, 0.0, -jnp.inf), log_probs)


def restrict_log_probs(log_probs: jax.Array, feasible: jax.Array) -> jax.Array:
  """``log_probs (..., K)`` renormalised over the ``feasible (..., K)`` tokens; the others
  get ``-inf``. Each row needs at least one feasible token (``feasible_tokens``
  guarantees it)."""
  masked = jnp.where(feasible, log_probs, -jnp.inf)
  return masked - jax.scipy.special.logsumexp(masked, axis=-1, keepdims=True)


__all__ = ['DEFAULT_LIMITS', 'SpeedChangeLimits', 'current_motion_tokens',
           'feasible_next_tokens', 'feasible_tokens', 'last_token_speed', 'motion_speed',
           'restrict_log_probs', 'start_from_current_motion', 'token_speeds']
