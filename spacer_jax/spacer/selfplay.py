"""Self-play episodes in the token action space, and the anchor's view of them.

A :class:`SelfPlay` holds the static pieces of an episode (token environment, policy
network, observation and reward settings, episode length) and offers three pure,
jittable functions over a batch of worlds ``(W,)``:

* :meth:`SelfPlay.prepare`: logged scenarios -> :class:`Worlds` (reset to the current
  step, road-edge index, reduced road set, goals, the log's history tokens). Run once
  per scenario, not per episode.
* :meth:`SelfPlay.rollout`: one episode of ``num_steps`` policy steps by ``lax.scan``;
  every controlled agent samples a token from the shared policy, the environment runs
  ``S`` simulator steps per token and measures collisions / off-road at 10 Hz.
* :meth:`SelfPlay.anchor_tokens`: the executed episode as one token sequence per agent
  (logged history + what every object did), the input of the reference model's single
  teacher-forced pass.

Time-major outputs: ``(T, W, N, ...)`` with ``T = num_steps``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim.datatypes import SimulatorState, Trajectory
from spacer_jax.spacer import observation as obs_lib
from spacer_jax.spacer import rewards as rew
from spacer_jax.spacer.acting import SAMPLE, Decoding, make_policy_fn
from spacer_jax.spacer.observation import ObservationConfig, PolicyObservation, RoadPointSet
from spacer_jax.spacer.policy import LateFusionPolicy
from spacer_jax.tokens.feasibility import feasible_next_tokens
from spacer_jax.tokens.token_env import TokenEnvironment
from spacer_jax.tokens.tokenize import Tokenized, tokenize


@struct.dataclass
class Worlds:
  """Scenarios ready for episodes; every field has the worlds' batch shape ``(...)``.

  Attributes:
    state: reset ``SimulatorState`` at ``timestep = init_steps - 1`` with its road-edge
      index and the controlled mask set.
    road: the reduced road set of the observation.
    goal: ``(..., N, 2)`` last valid logged position of each object, m.
    history: the log tokenised up to the current step: ``token_ids`` / ``valid``
      ``(..., N, H)``, ``poses (..., N, H + 1, 3)``, ``H = (init_steps - 1) / S``.
    log_offroad: ``(..., N)`` bool, the logged trajectory is off road at some step of
      the episode (``rewards.log_offroad``); None where no rewards are computed.
  """

  state: SimulatorState
  road: RoadPointSet
  goal: jax.Array
  history: Optional[Tokenized]
  log_offroad: Optional[jax.Array] = None


@struct.dataclass
class Episode:
  """One self-play episode of ``T`` policy steps over ``W`` worlds of ``N`` slots.

  Attributes:
    obs: :class:`PolicyObservation` ``(T, W, N, ...)`` seen before each action.
    actions: ``(T, W, N)`` int32 token ids sampled (0 where the agent did not act).
    log_probs: ``(T, W, N)`` log pi(action) of the acting policy.
    values: ``(T, W, N)`` critic values.
    acted: ``(T, W, N)`` bool, the agent was alive and acted (the learning mask).
    done: ``(T, W, N)`` bool, its episode ended with that step.
    task_reward: ``(T, W, N)`` goal / collision / off-road reward of the step.
    goal, collision, offroad: ``(T, W, N)`` bool events of the step.
    last_value: ``(W, N)`` critic value after the last step (bootstrap for agents
      still alive when the episode is truncated).
    offroad_exempt: ``(W, N)`` bool, agents exempt from the off-road event because
      their log is off road (``RewardConfig.exempt_log_offroad``).
    final_state: the ``SimulatorState`` after the episode.
    status: the agents' :class:`AgentStatus` after the episode.
    controlled: ``(W, N)`` bool, the agents the policy controlled.
  """

  obs: PolicyObservation
  actions: jax.Array
  log_probs: jax.Array
  values: jax.Array
  acted: jax.Array
  done: jax.Array
  task_reward: jax.Array
  goal: jax.Array
  collision: jax.Array
  offroad: jax.Array
  last_value: jax.Array
  offroad_exempt: jax.Array
  final_state: SimulatorState
  status: rew.AgentStatus
  controlled: jax.Array


# Episode fields with a leading time axis ``(T, W, ...)``; the others start at ``W``.
TIME_MAJOR_FIELDS = ('obs', 'actions', 'log_probs', 'values', 'acted', 'done',
                     'task_reward', 'goal', 'collision', 'offroad')


@dataclasses.dataclass(frozen=True)
class SelfPlay:
  """Static description of a self-play episode (see the module docstring).

  Attributes:
    token_env: the token environment (its wrapped environment decides who is
      controlled at reset and which metrics run; it needs ``overlap`` and ``offroad``).
    policy: the shared policy network.
    obs_config: observation sizes and scales.
    reward_config: task reward weights and terminal behaviour.
    num_steps: policy steps per episode (40 = 8 s at 5 Hz).
  """

  token_env: TokenEnvironment
  policy: LateFusionPolicy
  obs_config: ObservationConfig
  reward_config: rew.RewardConfig
  num_steps: int

  def __post_init__(self):
    s = self.token_env.steps_per_token
    init = self.token_env.env.config.init_steps
    if (init - 1) % s:
      raise ValueError(f'init_steps - 1 = {init - 1} is not a whole number of tokens of '
                       f'{s} steps: the history cannot be tokenised up to the current step.')
    missing = {'overlap', 'offroad'} - set(self.token_env.env.config.metrics_to_compute)
    if missing:
      raise ValueError(f'the environment must compute {sorted(missing)} for the rewards; '
                       'add them to EnvConfig.metrics.')
    if self.num_steps < 1:
      raise ValueError(f'num_steps must be >= 1, got {self.num_steps}.')

  @property
  def start_step(self) -> int:
    """The simulator step an episode starts from (the current step of the log)."""
    return self.token_env.env.config.init_steps - 1

  @property
  def history_tokens(self) -> int:
    """H, tokens of logged history before the first action."""
    return self.start_step // self.token_env.steps_per_token

  @property
  def num_timesteps_needed(self) -> int:
    """Log length an episode needs: start step + S * num_steps + 1."""
    return self.start_step + self.token_env.steps_per_token * self.num_steps + 1

  # -- worlds ----------------------------------------------------------------------

  def prepare(self, scenarios: SimulatorState) -> Worlds:
    """Logged scenarios (any batch shape, ``timestep`` anything) -> :class:`Worlds`."""
    if scenarios.log_trajectory.num_timesteps < self.num_timesteps_needed:
      raise ValueError(
          f'scenarios have {scenarios.log_trajectory.num_timesteps} logged steps; an '
          f'episode of {self.num_steps} tokens from step {self.start_step} needs '
          f'{self.num_timesteps_needed}.')
    state = self.token_env.reset(scenarios)
    road = obs_lib.prepare_road_points(state, self.obs_config)
    goal = obs_lib.goal_positions(state.log_trajectory)
    head = _time_slice(state.log_trajectory, 0, self.start_step + 1)
    history = tokenize(self.token_env.vocab, head, state.object_metadata.object_types)
    log_off = rew.log_offroad(state, self.start_step + 1, self.num_timesteps_needed)
    return Worlds(state=state, road=road, goal=goal, history=history, log_offroad=log_off)

  # -- acting ----------------------------------------------------------------------

  def act(self, params: Any, obs: PolicyObservation, rng: jax.Array,
          decoding: Decoding = SAMPLE) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(actions, log_probs, values, logits)`` of the policy on ``obs`` ``(..., N)``,
    decoded by ``decoding`` (:func:`spacer_jax.spacer.acting.make_policy_fn`, the one
    acting path of training, in-training evaluation and ``experiments.evaluate``)."""
    step = make_policy_fn(self.policy, decoding)(params, obs, rng)
    return step.actions, step.log_probs, step.values, step.logits

  def observe(self, worlds: Worlds, state: SimulatorState, status: rew.AgentStatus,
              goal_visible: jax.Array) -> PolicyObservation:
    # The observation's collided / off-road flags stay False: agents keep acting after
    # events (WOSAC episodes) and evaluation (eval.sim_agent_policies.LearnedPolicy)
    # tracks no events, so a policy must not learn to rely on them.
    no_event = jnp.zeros_like(status.alive)
    obs = obs_lib.build_observation(state, status.alive, worlds.goal, no_event, no_event,
                                    goal_visible, worlds.road, self.obs_config)
    if self.obs_config.feasible_actions:
      obs = obs.replace(feasible=feasible_next_tokens(self.token_env.vocab, state))
    return obs

  def rollout(self, params: Any, worlds: Worlds, rng: jax.Array,
              decoding: Decoding = SAMPLE) -> Episode:
    """One episode of ``num_steps`` policy steps from the worlds' current step.

    Args:
      params: policy parameters.
      worlds: :class:`Worlds` with batch shape ``(W,)`` (any leading shape works).
      rng: PRNG key (goal dropout and action sampling).
      decoding: how tokens are chosen; training samples the whole distribution.

    Returns:
      An :class:`Episode`, time-major.
    """
    state = worlds.state
    cfg = self.reward_config
    cur = state.current_sim_trajectory
    controlled = state.object_metadata.is_controlled & cur.valid[..., 0]
    status = rew.AgentStatus.create(
        controlled, rew.at_goal(cur.xy[..., 0, :], worlds.goal, cfg.goal_radius))
    rng, goal_rng = jax.random.split(rng)
    goal_visible = obs_lib.sample_goal_visible(goal_rng, controlled.shape, self.obs_config)
    exempt = jnp.zeros_like(controlled)
    if cfg.exempt_log_offroad:
      if worlds.log_offroad is None:
        raise ValueError('RewardConfig.exempt_log_offroad needs Worlds.log_offroad: build '
                         'the worlds with SelfPlay.prepare.')
      exempt = controlled & worlds.log_offroad

    # Goal distances only feed the optional progress term.
    distance = lambda s: rew.goal_distance(s.current_sim_trajectory.xy[..., 0, :],
                                           worlds.goal)
    start_distance = distance(state) if cfg.progress_weight else None

    def step(carry, key):
      state, status = carry
      before = distance(state) if cfg.progress_weight else None
      obs = self.observe(worlds, state, status, goal_visible)
      actions, log_prob, values, _ = self.act(params, obs, key, decoding)
      # Alive agents act; frozen ones stand still (token 0); removed ones leave the
      # scene (a negative id makes them invalid); the rest replay the log.
      token_ids = jnp.where(status.alive, actions, jnp.where(status.frozen, 0, -1))
      state, metrics = self.token_env.step(state, token_ids)
      collided = jnp.any(rew.metric_flag(metrics['overlap']), axis=-2)
      offroad = jnp.any(rew.metric_flag(metrics['offroad']), axis=-2) & ~exempt
      cur = state.current_sim_trajectory
      reached = cur.valid[..., 0] & rew.at_goal(cur.xy[..., 0, :], worlds.goal,
                                                cfg.goal_radius)
      status, events = rew.update_status(status, collided, offroad, reached, cfg)
      task = rew.task_reward(events.collision, events.offroad, events.goal, events.acted,
                             cfg)
      if cfg.progress_weight:
        task = task + rew.progress_reward(before, distance(state), start_distance,
                                          events.acted, cfg)
      out = dict(obs=obs, actions=jnp.where(events.acted, actions, 0),
                 log_probs=jnp.where(events.acted, log_prob, 0.0),
                 values=jnp.where(events.acted, values, 0.0), acted=events.acted,
                 done=events.done, task_reward=task, goal=events.goal,
                 collision=events.collision, offroad=events.offroad)
      return (state, status), out

    keys = jax.random.split(rng, self.num_steps)
    (state, status), out = jax.lax.scan(step, (state, status), keys)
    last_obs = self.observe(worlds, state, status, goal_visible)
    _, last_value = self.policy.apply(params, last_obs)
    last_value = jnp.where(status.alive, last_value, 0.0)
    return Episode(last_value=last_value, offroad_exempt=exempt, final_state=state,
                   status=status, controlled=controlled, **out)

  def rollout_per_world(self, params: Any, worlds: Worlds, keys: jax.Array,
                        decoding: Decoding = SAMPLE) -> Episode:
    """:meth:`rollout` with one PRNG key per world, ``keys (W,)``.

    A world's episode depends on its own key only, so however the worlds are split
    over devices (``shard_map`` over a data mesh) the same episodes are drawn.
    Returns the same time-major :class:`Episode` as :meth:`rollout`.
    """
    episode = jax.vmap(lambda w, k: self.rollout(params, w, k, decoding))(worlds, keys)
    to_time_major = lambda a: jnp.moveaxis(a, 1, 0)
    return episode.replace(**{name: jax.tree_util.tree_map(to_time_major,
                                                           getattr(episode, name))
                              for name in TIME_MAJOR_FIELDS})

  # -- the anchor's view -------------------------------------------------------------

  def anchor_tokens(self, worlds: Worlds, episode: Episode
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The episode as the reference model reads it: ``(token_ids, poses, valid)``.

    Positions ``0 .. H - 1`` hold the logged history tokens, positions ``H .. H + T - 1``
    what each object did in the episode: the sampled token for agents that acted, and
    the nearest token of their simulated motion for every other object (log replay,
    frozen). Boundary poses are the simulated poses, so the reference conditions on
    exactly what happened.

    Returns:
      ``token_ids (W, N, H + T)`` int32, ``poses (W, N, H + T + 1, 3)``,
      ``valid (W, N, H + T)`` bool, for the worlds' batch shape ``(W,)``.
    """
    s = self.token_env.steps_per_token
    t0, num_t = self.start_step, self.num_steps
    sim = _time_slice(episode.final_state.sim_trajectory, t0, t0 + s * num_t + 1)
    meta = episode.final_state.object_metadata
    done_by_others = tokenize(self.token_env.vocab, sim, meta.object_types)
    acted = jnp.moveaxis(episode.acted, 0, -1)  # (W, N, T)
    ids = jnp.where(acted, jnp.moveaxis(episode.actions, 0, -1), done_by_others.token_ids)
    boundary = jnp.stack([sim.x, sim.y, sim.yaw], -1)[..., ::s, :]  # (W, N, T + 1, 3)
    boundary_ok = sim.valid[..., ::s]
    valid = acted | done_by_others.valid
    hist = worlds.history
    token_ids = jnp.concatenate([hist.token_ids, ids], axis=-1)
    poses = jnp.concatenate([hist.poses[..., :-1, :],
                             jnp.where(boundary_ok[..., None], boundary, 0.0)], axis=-2)
    return token_ids, poses, jnp.concatenate([hist.valid, valid], axis=-1)


def _time_slice(trajectory: Trajectory, start: int, stop: int) -> Trajectory:
  """Steps ``start .. stop - 1`` (static) of a trajectory ``(..., N, T)``."""
  return jax.tree_util.tree_map(lambda x: x[..., start:stop], trajectory)


def select_worlds(worlds: Worlds, index: jax.Array) -> Worlds:
  """Worlds ``index`` ``(W,)`` of a pool with batch shape ``(P,)`` (an in-graph gather)."""
  return jax.tree_util.tree_map(lambda x: jnp.take(x, index, axis=0), worlds)


__all__ = ['Episode', 'SelfPlay', 'TIME_MAJOR_FIELDS', 'Worlds', 'select_worlds']
