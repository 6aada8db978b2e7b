"""Concrete sim-agent policies for :func:`spacer_jax.eval.sim_agents.closed_loop_rollout`.

* :class:`LogReplayPolicy`: the logged poses and velocities of the next ``S`` steps.
* :class:`ConstantVelocityPolicy`: current speed along the current yaw, yaw kept.
* :class:`IDMPolicy`: :class:`spacer_jax.sim.agents.IDMAgent` run ``S`` times at 10 Hz
  on a scratch copy of the state; it reacts to the others at the decision rate.
* :class:`ReferencePolicy`: autoregressive sampling from the reference model, fed with
  what every object actually did (so it reacts to an ego planner).
* :class:`LearnedPolicy`: a trained PPO / HR-PPO / SPACER policy (``SelfPlay``).
* :func:`load_policy`: builds any of them from a spec string.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from spacer_jax.eval.sim_agents import Motion, SimAgentPolicy
from spacer_jax.models.api import (
    DecodeState,
    build_reference_inputs,
    count_params,
    decode_step,
    init_decode,
    init_reference,
)
from spacer_jax.models.config import ReferenceConfig
from spacer_jax.models.features import MapSegments
from spacer_jax.models.rollout import PerType, per_type, sample_tokens
from spacer_jax.sim.agents import IDMAgent
from spacer_jax.sim.config import EnvConfig
from spacer_jax.sim.datatypes import TIMESTEP_SECONDS, slice_time
from spacer_jax.sim.dynamics import get_dynamics_model
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.sim.registry import Registry
from spacer_jax.spacer import observation as obs_lib
from spacer_jax.spacer.acting import GREEDY, SAMPLE, Decoding
from spacer_jax.spacer.rewards import AgentStatus
from spacer_jax.spacer.selfplay import SelfPlay, Worlds
from spacer_jax.tokens.feasibility import (
  feasible_next_tokens,
  restrict_log_probs,
  start_from_current_motion,
)
from spacer_jax.tokens.token_env import TokenEnvironment
from spacer_jax.tokens.tokenize import match_tokens, token_corners, tokenize
from spacer_jax.tokens.vocabulary import TokenVocabulary, agent_type_index


def _pose(trajectory) -> jax.Array:
  """``(..., N, 3)`` (x, y, yaw) of a one-step trajectory ``(..., N, 1)``."""
  return jnp.stack([trajectory.x, trajectory.y, trajectory.yaw], -1)[..., 0, :]


def _check_steps(policy: SimAgentPolicy, steps: int, vocab: TokenVocabulary) -> None:
  if steps != vocab.steps_per_token:
    raise ValueError(f'{type(policy).__name__} moves {steps} simulator steps per decision '
                     f'but the runner\'s vocabulary has {vocab.steps_per_token}.')


def default_env() -> MultiAgentEnvironment:
  """Every valid object controlled, overlap and off-road measured (SPACER's setting)."""
  return MultiAgentEnvironment(get_dynamics_model('delta_global'),
                               EnvConfig(metrics=('overlap', 'offroad'), rewards={}))


# --------------------------------------------------------------------------- scripted
@dataclasses.dataclass(frozen=True)
class LogReplayPolicy(SimAgentPolicy):
  """The log: logged poses / velocities of the next ``S`` steps, and every object valid
  at the boundary stays valid.

  WOSAC simulates every object valid at the current step for all 80 future steps, so
  an object whose log ends (or has a gap) must keep moving. Where the log is invalid
  at a sub-step the object continues at constant velocity from its last pose (its last
  logged velocity, heading kept), and it rejoins the log where the log resumes. This
  is the Waymo tutorial's extrapolation applied from the last logged state: leavers
  keep driving out of the scene (followers are not blocked by a parked ghost) and
  stopped objects stay put. The official ``scenario_to_joint_scene`` instead copies
  the invalid states (zeros in Scenario protos), which park every ended object at the
  frame origin: far from WOMD's maps, inside generated ones. Where the log is valid
  the simulation reproduces it exactly.

  Attributes:
    steps_per_token: S (must match the runner's vocabulary).
    dt: simulator step of the extrapolation, seconds.
  """

  name: ClassVar[str] = 'log_replay'
  steps_per_token: int = 2
  dt: float = TIMESTEP_SECONDS

  def check(self, env, vocab, num_steps):
    _check_steps(self, self.steps_per_token, vocab)

  def propose(self, params, carry, state, rng):
    del params, carry, rng
    log = slice_time(state.log_trajectory, state.timestep + 1, self.steps_per_token)
    cur = state.current_sim_trajectory
    x, y, yaw, vx, vy = (getattr(cur, n)[..., 0] for n in ('x', 'y', 'yaw', 'vel_x',
                                                          'vel_y'))
    poses, velocities = [], []
    for k in range(self.steps_per_token):  # S is small (2): unrolled
      ok = log.valid[..., k]
      lx, ly, lyaw, lvx, lvy = (getattr(log, n)[..., k] for n in ('x', 'y', 'yaw', 'vel_x',
                                                                  'vel_y'))
      # Extrapolate with the previous sub-step's velocity, then take the log if valid.
      x, y = jnp.where(ok, lx, x + vx * self.dt), jnp.where(ok, ly, y + vy * self.dt)
      yaw, vx, vy = jnp.where(ok, lyaw, yaw), jnp.where(ok, lvx, vx), jnp.where(ok, lvy, vy)
      poses.append(jnp.stack([x, y, yaw], -1))
      velocities.append(jnp.stack([vx, vy], -1))
    return Motion(poses=jnp.stack(poses, -2), velocities=jnp.stack(velocities, -2),
                  valid=cur.valid[..., 0])


@dataclasses.dataclass(frozen=True)
class ConstantVelocityPolicy(SimAgentPolicy):
  """Current speed along the current yaw (box heading), yaw kept: the ``S``-step
  closed form of :class:`spacer_jax.sim.agents.ConstantVelocityAgent`.

  Attributes:
    steps_per_token: S (must match the runner's vocabulary).
    dt: simulator step, seconds.
  """

  name: ClassVar[str] = 'constant_velocity'
  steps_per_token: int = 2
  dt: float = TIMESTEP_SECONDS

  def check(self, env, vocab, num_steps):
    _check_steps(self, self.steps_per_token, vocab)

  def propose(self, params, carry, state, rng):
    del params, carry, rng
    cur = state.current_sim_trajectory
    speed = jnp.sqrt(cur.vel_x**2 + cur.vel_y**2)  # (..., N, 1)
    vel = jnp.concatenate([speed * jnp.cos(cur.yaw), speed * jnp.sin(cur.yaw)], -1)
    elapsed = self.dt * jnp.arange(1, self.steps_per_token + 1, dtype=jnp.float32)
    xy = _pose(cur)[..., None, :2] + vel[..., None, :] * elapsed[:, None]  # (..., N, S, 2)
    yaw = jnp.broadcast_to(cur.yaw, xy.shape[:-1])
    return Motion(poses=jnp.concatenate([xy, yaw[..., None]], -1),
                  velocities=jnp.broadcast_to(vel[..., None, :], xy.shape),
                  valid=cur.valid[..., 0])


@dataclasses.dataclass(frozen=True)
class IDMPolicy(SimAgentPolicy):
  """IDM along each object's logged path (:class:`spacer_jax.sim.agents.IDMAgent`).

  ``propose`` runs the agent's 10 Hz ``select_update`` ``S`` times on a scratch copy of
  the state, advancing it with ``env.step_with_update``: within a decision step the IDM
  agents follow each other at 10 Hz, but they see what other policies (an overridden
  ego) do only at the next decision boundary, i.e. they react at the decision rate.
  Without an override the rollout equals a 10 Hz ``IDMAgent`` rollout.

  Attributes:
    env: the environment that advances the scratch state (the runner's, normally).
    agent: the IDM parameters.
    steps_per_token: S (must match the runner's vocabulary).
  """

  name: ClassVar[str] = 'idm'
  env: MultiAgentEnvironment = dataclasses.field(default_factory=default_env)
  agent: IDMAgent = IDMAgent()
  steps_per_token: int = 2

  def check(self, env, vocab, num_steps):
    _check_steps(self, self.steps_per_token, vocab)

  def propose(self, params, carry, state, rng):
    del params, carry, rng

    def substep(scratch, _):
      update = self.agent.select_update(scratch)
      out = (jnp.concatenate([update.x, update.y, update.yaw], -1),
             jnp.concatenate([update.vel_x, update.vel_y], -1), update.valid[..., 0])
      return self.env.step_with_update(scratch, update), out

    _, (poses, vels, valid) = jax.lax.scan(substep, state, None,
                                           length=self.steps_per_token)
    return Motion(poses=jnp.moveaxis(poses, 0, -2), velocities=jnp.moveaxis(vels, 0, -2),
                  valid=jnp.moveaxis(valid, 0, -1))


# --------------------------------------------------------------------------- reference
@struct.dataclass
class ReferenceCarry:
  """The reference policy's state between decision steps.

  Attributes:
    decode: the KV-cached decoder state (map encoding, cache of every position so far).
    log_probs: ``(..., N, K)`` distribution of every object's next token.
    position: int32 scalar, the next token position (history length + steps done).
  """

  decode: DecodeState
  log_probs: jax.Array
  position: jax.Array


@dataclasses.dataclass(frozen=True)
class ReferencePolicy(SimAgentPolicy):
  """Autoregressive sampling from the tokenized reference model.

  ``init`` tokenises the logged history and fills the decode cache like
  :func:`spacer_jax.models.rollout.rollout_with_selector`; ``propose`` samples every
  object's token (top-k, temperature) from the current distribution and executes it
  from the simulated pose; ``observe`` feeds back what every object actually did (an
  overridden ego and log-replayed objects included) as the nearest token
  (``match_tokens``) from the previous boundary pose to the executed sub-step poses,
  with those boundary poses. For an object that executed its own token the nearest
  token is that token (tokens of a vocabulary are distinct), so without an override
  the rollout equals ``reference_rollout`` with the same key.

  Attributes:
    config: the model's config.
    vocab: the vocabulary it predicts.
    token_env: executes tokens; its ``init_steps`` must be the runner's.
    top_k: sample among the ``top_k`` most likely tokens (1 = greedy); one value, or a
      (vehicle, pedestrian, cyclist) tuple.
    temperature: divides the log-probabilities before sampling (> 0); one value or a
      tuple like ``top_k``.
    max_steps: decision steps the decode cache holds (the runner checks
      ``num_steps <= max_steps``; decoding is identical for any ``max_steps``).
    feasible: physically possible motion only (``tokens.feasibility``): each object
      samples among the tokens within its type's speed-change bound of its last
      token's speed, and an object whose last history token is missing starts with
      the token nearest to continuing its current motion instead of a draw from a
      near-uniform first distribution. False decodes the model as it is.
    reactive: False makes the non-reactive imitation agents of the planner study: the
      model is fed the SDC's LOGGED motion (tokens and boundary poses) whatever the
      ego planner executes, so the other objects never see the ego's actual motion
      (they may drive into it). Objects other than the SDC are fed what they did.

  Equality and hash (the policy is a static argument of compiled runners and the key
  of their caches) cover everything the compiled program depends on: the model config,
  the sampling settings, the vocabularies' contents (their arrays are baked into the
  program as constants) and the token environment's wrapped environment. The model's
  parameters are not part of the policy: every runner takes them as an argument.
  """

  name: ClassVar[str] = 'reference'
  config: ReferenceConfig
  vocab: TokenVocabulary
  token_env: TokenEnvironment
  top_k: PerType = 32
  temperature: PerType = 1.0
  max_steps: int = 40
  feasible: bool = True
  reactive: bool = True

  def __post_init__(self):
    # Tuples (hashable: the policy is a static argument) for per-type settings.
    for name in ('top_k', 'temperature'):
      value = getattr(self, name)
      if isinstance(value, (tuple, list)):
        object.__setattr__(self, name, per_type(value, f'ReferencePolicy.{name}'))
    if min(per_type(self.temperature, 'temperature')) <= 0:
      raise ValueError(f'ReferencePolicy.temperature must be > 0 (use top_k=1 for greedy), '
                       f'got {self.temperature}.')
    if min(per_type(self.top_k, 'top_k')) < 1:
      raise ValueError(f'ReferencePolicy.top_k must be >= 1, got {self.top_k}.')
    k = {self.vocab.num_tokens, self.config.num_tokens, self.token_env.vocab.num_tokens}
    if len(k) != 1:
      raise ValueError(f'ReferencePolicy: the vocabulary has {self.vocab.num_tokens} '
                       f'tokens, the model predicts {self.config.num_tokens} and the token '
                       f'environment executes {self.token_env.vocab.num_tokens}.')

  @functools.cached_property
  def _key(self) -> tuple:
    # Cached: jit hashes its static arguments on every call, and digesting the
    # vocabularies reads them back from the device.
    return (self.config, vocabulary_key(self.vocab), self.token_env.env,
            vocabulary_key(self.token_env.vocab), self.top_k, self.temperature,
            self.max_steps, self.feasible, self.reactive)

  def __eq__(self, other):
    if other.__class__ is not self.__class__:
      return NotImplemented
    return self._key == other._key

  def __hash__(self):
    return hash(self._key)

  @property
  def history_tokens(self) -> int:
    """H, logged tokens before the current step."""
    return (self.token_env.env.config.init_steps - 1) // self.vocab.steps_per_token

  def num_params(self, params=None):
    if params is not None:
      return count_params(params)
    return count_params(jax.eval_shape(
        lambda key: init_reference(self.config, key, _dummy_reference_inputs(self.config)),
        jax.random.key(0)))

  def check(self, env, vocab, num_steps):
    _check_steps(self, self.vocab.steps_per_token, vocab)
    init = self.token_env.env.config.init_steps
    if env.config.init_steps != init or (init - 1) % vocab.steps_per_token:
      raise ValueError(f'ReferencePolicy: the runner starts at init_steps - 1 = '
                       f'{env.config.init_steps - 1}, the policy\'s token environment at '
                       f'{init - 1}; they must agree and be a multiple of '
                       f'{vocab.steps_per_token}.')
    if num_steps > self.max_steps:
      raise ValueError(f'ReferencePolicy.max_steps={self.max_steps} is shorter than the '
                       f'{num_steps} decision steps asked for.')

  def init(self, params, state, rng):
    del rng
    hist = self.history_tokens
    tok = tokenize(self.vocab, state.log_trajectory, state.object_metadata.object_types)
    ids, poses, valid = (tok.token_ids[..., :hist], tok.poses[..., :hist + 1, :],
                         tok.valid[..., :hist])
    # The last history boundary is the simulated (= logged) current pose, where the
    # first rolled-out token starts (as in rollout_with_selector).
    now = state.current_sim_trajectory
    poses = poses.at[..., hist, :].set(
        jnp.where(now.valid[..., 0, None], _pose(now), poses[..., hist, :]))
    inputs = build_reference_inputs(state, ids, poses, valid, config=self.config)
    dec = init_decode(self.config, params, inputs, max_len=hist + self.max_steps)
    move = lambda a, axis: jnp.moveaxis(a, axis, 0)

    def body(d, xs):
      position, i, start, end, ok = xs
      log_probs, d = decode_step(self.config, params, d, position, i, start, end, ok)
      return d, log_probs

    dec, lp = jax.lax.scan(body, dec, (
        jnp.arange(hist, dtype=jnp.int32), move(ids, -1), move(poses[..., :-1, :], -2),
        move(poses[..., 1:, :], -2), move(valid, -1)))
    log_probs = lp[-1]
    if self.feasible:
      log_probs = start_from_current_motion(self.vocab, state, log_probs, valid[..., -1])
    return ReferenceCarry(decode=dec, log_probs=log_probs, position=jnp.int32(hist))

  def propose(self, params, carry, state, rng):
    del params
    log_probs = carry.log_probs
    if self.feasible:
      log_probs = restrict_log_probs(log_probs, feasible_next_tokens(self.vocab, state))
    ids = sample_tokens(log_probs, rng, self.top_k, self.temperature,
                        state.object_metadata.object_types)
    poses, velocities, valid = self.token_env.execute(state, ids)
    return Motion(poses=poses, velocities=velocities, valid=valid)

  def observe(self, params, carry, prev_state, state):
    s = self.vocab.steps_per_token
    before, after = prev_state.current_sim_trajectory, state.current_sim_trajectory
    executed = slice_time(state.sim_trajectory, prev_state.timestep + 1, s)
    if not self.reactive:
      # The SDC as the log has it: what the model sees of the ego never depends on
      # the planner.
      sdc = state.object_metadata.is_sdc
      pick = lambda sim, log: jax.tree.map(
          lambda a, b: jnp.where(sdc.reshape(sdc.shape + (1,) * (a.ndim - sdc.ndim)), b, a),
          sim, log)
      log = state.log_trajectory
      executed = pick(executed, slice_time(log, prev_state.timestep + 1, s))
      before = pick(before, slice_time(log, prev_state.timestep, 1))
      after = pick(after, slice_time(log, state.timestep, 1))
    target = jnp.stack([executed.x, executed.y, executed.yaw], -1)  # (..., N, S, 3)
    start = _pose(before)
    valid = before.valid[..., 0] & after.valid[..., 0]
    length, width = before.length[..., 0], before.width[..., 0]
    type_index = agent_type_index(state.object_metadata.object_types)
    corners = token_corners(self.vocab, type_index, length, width)
    ids, _ = match_tokens(corners, start, target, length, width)
    ids = jnp.where(valid, ids, 0)
    log_probs, dec = decode_step(self.config, params, carry.decode, carry.position, ids,
                                 start, _pose(after), valid)
    return ReferenceCarry(decode=dec, log_probs=log_probs, position=carry.position + 1)


def vocabulary_key(vocab: TokenVocabulary) -> tuple:
  """A hashable key of ``vocab`` for static-argument equality: its static sizes and a
  SHA-256 digest of its arrays, so vocabularies with the same contents share compiled
  programs and different ones never do. Vocabularies of traced arrays (a policy built
  inside a trace) fall back to identity."""
  arrays = (vocab.poses, vocab.corners, vocab.box_sizes)
  if any(isinstance(a, jax.core.Tracer) for a in arrays):
    return (vocab.num_tokens, vocab.steps_per_token, id(vocab))
  digest = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(np.asarray(a))
    digest.update(f'{a.dtype}{a.shape}'.encode())
    digest.update(a.tobytes())
  return (vocab.num_tokens, vocab.steps_per_token, digest.hexdigest())


def _dummy_reference_inputs(config: ReferenceConfig):
  """Smallest inputs with the model's feature sizes (for shape-only parameter counts)."""
  from spacer_jax.models.api import ReferenceInputs
  f32, i32 = jnp.float32, jnp.int32
  points = config.segment_step + 1
  seg = MapSegments(
      xy=jnp.zeros((1, 2), f32), yaw=jnp.zeros((1,), f32), start=jnp.zeros((1, 2), f32),
      end=jnp.zeros((1, 2), f32), length=jnp.zeros((1,), f32), types=jnp.zeros((1,), i32),
      points=jnp.zeros((1, points, 2), f32), points_valid=jnp.zeros((1, points), bool),
      valid=jnp.zeros((1,), bool))
  return ReferenceInputs(seg, jnp.zeros((2,), i32), jnp.zeros((2, 2), f32),
                         jnp.ones((2,), bool), jnp.zeros((2, 1), i32),
                         jnp.zeros((2, 2, 3), f32), jnp.ones((2, 1), bool))


# --------------------------------------------------------------------------- learned
@struct.dataclass
class LearnedCarry:
  """What a learned policy keeps from ``SelfPlay.prepare``.

  Attributes:
    road: the reduced road set of the observation.
    goal: ``(..., N, 2)`` goal positions (last valid logged position), m.
    goal_visible: ``(..., N)`` bool, goal shown to each agent for the episode.
  """

  road: obs_lib.RoadPointSet
  goal: jax.Array
  goal_visible: jax.Array


GOAL_MODES = ('config', 'visible', 'hidden')


@dataclasses.dataclass(frozen=True)
class LearnedPolicy(SimAgentPolicy):
  """A trained self-play policy (PPO, HR-PPO or SPACER) as a sim agent.

  Observations come from ``SelfPlay.observe`` (road set and goals prepared at ``init``
  as ``SelfPlay.prepare`` does), tokens from ``SelfPlay.act`` (the acting path of
  training, :func:`spacer_jax.spacer.acting.make_policy_fn`), executed with the token
  environment. In evaluation agents are never removed: every valid object keeps
  acting after a collision, off-road or reaching its goal, and its collided / off-road
  observation flags stay False, as for a training agent that is still alive.

  Attributes:
    selfplay: the training setup (token environment, network, observation config).
    decoding: how each agent's token is chosen (``Decoding(top_k=5)``: the paper's
      setting; ``GREEDY``; the default samples the whole distribution, as in training).
    goals: ``'config'`` (goal dropout of ``selfplay.obs_config``, as in training
      evaluation), ``'visible'`` or ``'hidden'``; goals are the logged final positions,
      i.e. future information, so ``'hidden'`` is the strict closed-loop setting.
    variant: a label (``name``): 'spacer', 'ppo', 'hr_ppo', ...
  """

  selfplay: SelfPlay
  decoding: Decoding = SAMPLE
  goals: str = 'config'
  variant: str = 'learned'

  def __post_init__(self):
    if self.goals not in GOAL_MODES:
      raise ValueError(f'LearnedPolicy.goals={self.goals!r}; expected one of {GOAL_MODES}.')
    if not isinstance(self.decoding, Decoding):
      raise TypeError(f'LearnedPolicy.decoding must be a Decoding, got {self.decoding!r}.')

  @property
  def name(self) -> str:  # type: ignore[override]
    return self.variant

  @property
  def vocab(self) -> TokenVocabulary:
    return self.selfplay.token_env.vocab

  def num_params(self, params=None):
    if params is not None:
      return count_params(params)
    return count_params(jax.eval_shape(self.selfplay.policy.init, jax.random.key(0),
                                       example_observation(self.selfplay.obs_config)))

  def check(self, env, vocab, num_steps):
    _check_steps(self, self.selfplay.token_env.steps_per_token, vocab)

  def init(self, params, state, rng):
    del params
    # The observation's part of ``SelfPlay.prepare`` (road set, goals); the runner has
    # already reset the state, so prepare's reset and history tokens would be wasted.
    road = obs_lib.prepare_road_points(state, self.selfplay.obs_config)
    goal = obs_lib.goal_positions(state.log_trajectory)
    shape = state.object_metadata.shape
    if self.goals == 'config':
      visible = obs_lib.sample_goal_visible(rng, shape, self.selfplay.obs_config)
    else:
      visible = jnp.full(shape, self.goals == 'visible')
    return LearnedCarry(road=road, goal=goal, goal_visible=visible)

  def propose(self, params, carry, state, rng):
    alive = state.object_metadata.is_controlled & state.current_sim_trajectory.valid[..., 0]
    worlds = Worlds(state=state, road=carry.road, goal=carry.goal, history=None)
    obs = self.selfplay.observe(worlds, state, AgentStatus.create(alive), carry.goal_visible)
    actions = self.selfplay.act(params, obs, rng, self.decoding)[0]
    poses, velocities, valid = self.selfplay.token_env.execute(state, actions)
    return Motion(poses=poses, velocities=velocities, valid=valid)


def example_observation(config: obs_lib.ObservationConfig = obs_lib.ObservationConfig()
                        ) -> obs_lib.PolicyObservation:
  """One scene of two agents with one partner and one road point (shape-only init) with
  the feature widths of ``config``."""
  return obs_lib.PolicyObservation(
      ego=jnp.zeros((1, 2, config.ego_dim)),
      partners=jnp.zeros((1, 2, 1, obs_lib.PARTNER_DIM)),
      partner_mask=jnp.ones((1, 2, 1), bool), road=jnp.zeros((1, 2, 1, obs_lib.ROAD_DIM)),
      road_mask=jnp.ones((1, 2, 1), bool), type_index=jnp.zeros((1, 2), jnp.int32),
      valid=jnp.ones((1, 2), bool))


# --------------------------------------------------------------------------- loading
SCRIPTED = ('log_replay', 'constant_velocity', 'idm')
LEARNED = ('spacer', 'ppo', 'hr_ppo')


@dataclasses.dataclass(frozen=True)
class PolicyLoader:
  """How ``load_policy`` builds one kind of policy spec (``KIND`` or ``KIND:PATH``).

  ``build(path, env=, vocab=, **settings) -> (policy, params)``, with the decoding
  settings of :func:`load_policy` (``top_k``, ``temperature``, ``greedy``,
  ``max_steps``, ``goals``, ``learned_top_k``) as keywords; ``takes_path`` says whether
  the spec names a file (``default`` is a name any kind may give its packaged weights).
  """

  build: Callable[..., tuple[SimAgentPolicy, Any]]
  takes_path: bool


_POLICIES: Registry[PolicyLoader] = Registry('evaluation policy')


def register_eval_policy(kind: str, build: Callable[..., tuple[SimAgentPolicy, Any]],
                         takes_path: bool, overwrite: bool = False) -> PolicyLoader:
  """Makes the spec ``kind`` (``kind:PATH`` when ``takes_path``) load with ``build``
  in ``load_policy``, ``experiments.evaluate`` and ``experiments.export_wosac``."""
  return _POLICIES.register(kind, PolicyLoader(build, takes_path), overwrite)


def _steps(vocab: TokenVocabulary | None) -> int:
  return 2 if vocab is None else vocab.steps_per_token


def _scripted(make: Callable[[MultiAgentEnvironment, int], SimAgentPolicy]):
  return lambda path, *, env, vocab, **settings: (make(env, _steps(vocab)), None)


def _reference_loader(path, *, env, vocab, top_k, temperature, max_steps, feasible=True,
                      **settings):
  if path == 'default':  # The packaged default reference (trained if it is stale).
    from spacer_jax.models.default import get_or_train_default_reference
    path = get_or_train_default_reference(200 if vocab is None else vocab.num_tokens)
  return _load_reference_policy(path, env, vocab, top_k, temperature, max_steps, feasible)


def _learned_loader(kind: str):
  def build(path, *, env, vocab, greedy, goals, learned_top_k, **settings):
    if path == 'default':  # The policy packaged with spacer_jax (spacer.pretrained).
      from spacer_jax.spacer.pretrained import find_pretrained
      path = find_pretrained(kind)
    return _load_learned_policy(kind, path, vocab, greedy, goals, learned_top_k)
  return build


register_eval_policy('log_replay', _scripted(lambda env, s: LogReplayPolicy(s)), False)
register_eval_policy('constant_velocity',
                     _scripted(lambda env, s: ConstantVelocityPolicy(s)), False)
register_eval_policy('idm', _scripted(lambda env, s: IDMPolicy(env, IDMAgent(), s)), False)
register_eval_policy('reference', _reference_loader, True)
for _kind in LEARNED:
  register_eval_policy(_kind, _learned_loader(_kind), True)


def load_policy(spec: str, *, env: MultiAgentEnvironment | None = None,
                vocab: TokenVocabulary | None = None, top_k: int = 32,
                temperature: float = 1.0, greedy: bool = False, max_steps: int = 40,
                goals: str = 'config', learned_top_k: int = 0, feasible: bool = True
                ) -> tuple[SimAgentPolicy, Any]:
  """Builds a sim-agent policy and its parameters from a spec.

  Specs (kinds registered with :func:`register_eval_policy`): ``log_replay``,
  ``constant_velocity``, ``idm`` (no parameters; S from ``vocab``, default 2);
  ``reference:PATH`` (a reference artifact or ``train_reference`` workdir, via
  ``load_reference``; vocabulary from the artifact unless ``vocab`` is given;
  ``reference:default`` is the packaged default reference); ``spacer:WORKDIR``,
  ``ppo:WORKDIR``, ``hr_ppo:WORKDIR`` (a ``train_spacer`` workdir: its ``config.json``
  and newest checkpoint; vocabulary from the config unless ``vocab`` is given;
  ``spacer:default`` etc. are the pretrained policies packaged with spacer_jax, see
  :mod:`spacer_jax.spacer.pretrained`). Token policies expose their vocabulary as
  ``policy.vocab``: pass it to the runner.

  Args:
    spec: as above.
    env: environment of the IDM scratch state and of the token environments (default
      :func:`default_env`).
    vocab: token vocabulary override (must have the model's K).
    top_k, temperature, max_steps, feasible: reference sampling settings
      (``ReferencePolicy``).
    greedy, goals, learned_top_k: learned-policy settings (``top_k`` of
      :class:`LearnedPolicy`).

  Returns:
    ``(policy, params)``; params is None for scripted policies.

  Raises:
    ValueError: unknown spec, missing path, or a checkpoint that does not match.
    FileNotFoundError: the path does not exist.
  """
  kind, _, path = spec.partition(':')
  env = default_env() if env is None else env
  if kind not in _POLICIES:
    without = [k for k in _POLICIES if not _POLICIES.get(k).takes_path]
    with_path = ', '.join(f'{k}:PATH' for k in _POLICIES if _POLICIES.get(k).takes_path)
    raise ValueError(f'unknown policy spec {spec!r}; expected one of {without} or '
                     f'{with_path}.')
  loader = _POLICIES.get(kind)
  if not loader.takes_path and path:
    raise ValueError(f'policy spec {spec!r}: {kind!r} takes no path.')
  if loader.takes_path and not path:
    raise ValueError(f'policy spec {spec!r} needs a path: {kind}:PATH.')
  if path and path != 'default' and not os.path.exists(path):
    raise FileNotFoundError(f'policy spec {spec!r}: {path!r} does not exist.')
  return loader.build(path, env=env, vocab=vocab, top_k=top_k, temperature=temperature,
                      greedy=greedy, max_steps=max_steps, goals=goals,
                      learned_top_k=learned_top_k, feasible=feasible)


def _checked_vocab(vocab: TokenVocabulary, num_tokens: int, what: str) -> TokenVocabulary:
  if vocab.num_tokens != num_tokens:
    raise ValueError(f'{what} predicts {num_tokens} tokens but the vocabulary given has '
                     f'{vocab.num_tokens}.')
  return vocab


def _load_reference_policy(path, env, vocab, top_k, temperature, max_steps, feasible=True):
  from spacer_jax.models.checkpoint import load_reference
  from spacer_jax.tokens.vocabulary import load_vocabulary
  ref = load_reference(path)
  if vocab is None:
    if not os.path.exists(ref.vocabulary_path):
      raise FileNotFoundError(f'reference {path!r} was trained on vocabulary '
                              f'{ref.vocabulary_path!r}, which does not exist here; pass '
                              'vocab= explicitly.')
    vocab = load_vocabulary(ref.vocabulary_path)
  vocab = _checked_vocab(vocab, ref.config.num_tokens, f'reference {path!r}')
  policy = ReferencePolicy(ref.config, vocab, TokenEnvironment(env, vocab), top_k=top_k,
                           temperature=temperature, max_steps=max_steps,
                           feasible=feasible)
  return policy, ref.params


def _load_learned_policy(kind, workdir, vocab, greedy, goals, top_k=0):
  import ml_collections

  from spacer_jax.spacer.factory import load_vocab, make_selfplay, upgrade_config
  from spacer_jax.spacer.pretrained import resolve_vocabulary
  from spacer_jax.training import Checkpointer
  config_path = os.path.join(workdir, 'config.json')
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f'{workdir!r} is not a train_spacer workdir: no config.json.')
  if not os.path.isdir(ckpt_dir):
    raise FileNotFoundError(f'{workdir!r} has no checkpoints/ directory.')
  with open(config_path) as f:
    config = ml_collections.ConfigDict(upgrade_config(json.load(f)))
  resolve_vocabulary(config, workdir)  # A packaged policy names its own, relatively.
  if config.get('variant') != kind:
    raise ValueError(f'{workdir!r} holds a {config.get("variant")!r} run, not {kind!r}; '
                     f'use {config.get("variant")}:{workdir}.')
  out = Checkpointer(ckpt_dir).restore(None)
  if out is None:
    raise ValueError(f'{ckpt_dir!r} holds no finished checkpoint.')
  step, state, meta = out
  if vocab is None:
    # The vocabulary the checkpoint was trained with (runs whose config.json predates
    # explicit vocabulary paths name it only in the checkpoint's metadata).
    saved = (meta or {}).get('vocabulary')
    if saved and not config.tokens.vocabulary:
      if not os.path.exists(saved):
        raise FileNotFoundError(f'{workdir!r} was trained with the vocabulary {saved!r}, '
                                'which does not exist here; pass vocab= explicitly.')
      with config.unlocked():
        config.tokens.vocabulary = saved
    vocab = load_vocab(config)[0]
  selfplay = make_selfplay(config, _checked_vocab(vocab, config.tokens.num_tokens,
                                                  f'the {kind} policy in {workdir!r}'))
  params = state.get('params') if isinstance(state, dict) else None
  decoding = GREEDY if greedy else Decoding(top_k=top_k)
  policy = LearnedPolicy(selfplay, decoding=decoding, goals=goals, variant=kind)
  want = jax.eval_shape(selfplay.policy.init, jax.random.key(0),
                        example_observation(selfplay.obs_config))
  same = params is not None and jax.tree.structure(want) == jax.tree.structure(params) and all(
      tuple(a.shape) == tuple(b.shape)
      for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(params)))
  if not same:
    raise ValueError(f'checkpoint {ckpt_dir}/{step} does not hold parameters of the policy '
                     f'described by {config_path} (network sizes or K differ).')
  return policy, params


__all__ = ['GOAL_MODES', 'ConstantVelocityPolicy', 'IDMPolicy', 'LearnedCarry',
           'LearnedPolicy', 'LogReplayPolicy', 'ReferenceCarry', 'ReferencePolicy',
           'PolicyLoader', 'default_env', 'example_observation', 'load_policy',
           'register_eval_policy', 'vocabulary_key']
