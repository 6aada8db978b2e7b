"""SPACER rewards and per-agent episode status.

Per agent and policy step (paper's "Objective")::

  r_t = w_goal * 1[goal] - w_collision * 1[collision] - w_offroad * 1[off road]
        + alpha * log p_ref(a_t | s_t)

The goal is reached within ``goal_radius`` (2 m) of the agent's last valid logged
position.

Episodes are WOSAC episodes by default: every object valid at the current step stays
in the world and acts for the whole episode (``'continue'``), as evaluation simulates
it. Each event counts once per agent and episode, its first occurrence: WOSAC's
collision and off-road features are per-agent indicators over the 8 s ("did it ever
collide"), so only the first event of each kind changes what is scored, and a penalty
repeated while two boxes stay in contact would mostly teach agents to flee a contact
the score no longer sees. Agents that start within the goal radius (parked and queued
cars whose last logged position is where they stand) have nothing to reach: they
count as at goal from the start and earn no goal reward. Agents whose log itself is
off road during the episode (pedestrians on sidewalks, cars in driveways) are exempt
from the off-road penalty (``exempt_log_offroad``): WOSAC scores the likelihood of the
logged off-road flag, so the log's behaviour must not be punished.

Two other behaviours after an event remain selectable for comparison (they are not
WOSAC episodes: measured in docs/experiments.md, the removal rule leaves 28% of the
agent-step slots valid and no parked car in the world):

* ``'remove'``: the agent stops acting and leaves the scene (the rollout marks it
  invalid in the simulated trajectory, so others can no longer hit it);
* ``'freeze'``: the agent stops acting and stays where it is as an obstacle;
* ``'continue'`` (default): the agent keeps acting.

:class:`AgentStatus` carries the episode state per agent slot; :func:`update_status`
advances it by one step and says which events count for that step's reward.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from spacer_jax.sim.datatypes import SimulatorState
from spacer_jax.sim.metrics import registry
from spacer_jax.sim.metrics.base import MetricResult

TERMINAL_BEHAVIOURS = ('remove', 'freeze', 'continue')


@dataclasses.dataclass(frozen=True)
class RewardConfig:
  """Reward weights and terminal behaviour (paper defaults).

  Attributes:
    goal_weight: reward for reaching the goal (w_goal).
    collision_weight: penalty per collision (w_collision, subtracted).
    offroad_weight: penalty per off-road event (w_offroad, subtracted).
    goal_radius: metres from the goal that count as reached.
    after_goal, after_collision, after_offroad: one of ``TERMINAL_BEHAVIOURS``.
    exempt_log_offroad: no off-road event (penalty, removal) for agents whose logged
      trajectory is off road at any step of the episode.
    goal_after_infraction: whether an agent that has collided or gone off road may still
      earn its goal. With agents acting on after an event (``'continue'``), allowing it
      makes a collision on the way cost 0.75 against a goal worth 1: driving through
      others to the goal pays. False (default) makes the goal count only for an agent
      without an earlier (or same-step) collision or off-road event, as removal did;
      PufferDrive fixed the same loophole (its issue #450).
    progress_weight: weight of the dense goal-progress reward (0 = off): each step an
      acting agent earns ``progress_weight * (d_before - d_after) / max(d_start,
      progress_min_distance)``, ``d`` its distance to the goal (m). Over an episode it
      sums to the share of the way to the goal covered (1 at the goal, 0 standing
      still, negative driving away), so a policy that stops forfeits it: the sparse
      goal reward alone (goal rates 0.1-0.2 on 8 s episodes) loses to the safety of
      standing still. Parked cars (goal within ``progress_min_distance``) earn nothing
      for staying and lose for leaving.
    progress_min_distance: floor (m) of the distance the progress is divided by.
  """

  goal_weight: float = 1.0
  collision_weight: float = 0.75
  offroad_weight: float = 0.75
  goal_radius: float = 2.0
  after_goal: str = 'continue'
  after_collision: str = 'continue'
  after_offroad: str = 'continue'
  exempt_log_offroad: bool = True
  goal_after_infraction: bool = False
  progress_weight: float = 0.0
  progress_min_distance: float = 10.0

  def __post_init__(self):
    for name in ('after_goal', 'after_collision', 'after_offroad'):
      if getattr(self, name) not in TERMINAL_BEHAVIOURS:
        raise ValueError(f'RewardConfig.{name}={getattr(self, name)!r}; expected one of '
                         f'{TERMINAL_BEHAVIOURS}.')
    if not self.goal_radius > 0:
      raise ValueError(f'RewardConfig.goal_radius must be > 0, got {self.goal_radius}.')
    if not self.progress_min_distance > 0:
      raise ValueError(f'RewardConfig.progress_min_distance must be > 0 m, got '
                       f'{self.progress_min_distance}.')
    for name in ('goal_weight', 'collision_weight', 'offroad_weight', 'progress_weight'):
      if getattr(self, name) < 0:
        raise ValueError(f'RewardConfig.{name} must be >= 0, got {getattr(self, name)}.')


@struct.dataclass
class AgentStatus:
  """Episode state per agent slot; all fields ``(..., N)`` bool.

  Attributes:
    alive: the agent still acts (and its steps count for learning).
    frozen: stopped after an event with ``'freeze'``; stays in the scene.
    removed: taken out of the scene after an event with ``'remove'``.
    goal_reached, collided, offroad: the event has happened at least once (an agent
      that starts within its goal radius counts as at goal from the start; without
      ``RewardConfig.goal_after_infraction`` a goal counts only before any collision or
      off-road event).
    started_at_goal: within the goal radius at the start (no goal to reach).
  """

  alive: jax.Array
  frozen: jax.Array
  removed: jax.Array
  goal_reached: jax.Array
  collided: jax.Array
  offroad: jax.Array
  started_at_goal: jax.Array

  @classmethod
  def create(cls, controlled: jax.Array, at_goal_now: jax.Array | None = None
             ) -> AgentStatus:
    """Start of an episode: the controlled slots ``(..., N)`` are alive; those also in
    ``at_goal_now`` ``(..., N)`` bool have their goal reached already."""
    alive = jnp.asarray(controlled, bool)
    false = jnp.zeros_like(alive)
    start = false if at_goal_now is None else alive & jnp.asarray(at_goal_now, bool)
    return cls(alive=alive, frozen=false, removed=false, goal_reached=start,
               collided=false, offroad=false, started_at_goal=start)


@struct.dataclass
class StepEvents:
  """What one step did, per agent slot; all ``(..., N)`` bool.

  Attributes:
    acted: the agent was alive during the step (the learning mask of the step).
    goal: it reached its goal for the first time.
    collision, offroad: it collided / went off road for the first time in the episode.
    done: its episode ended with this step (an event with 'remove' or 'freeze').
  """

  acted: jax.Array
  goal: jax.Array
  collision: jax.Array
  offroad: jax.Array
  done: jax.Array


def at_goal(xy: jax.Array, goal: jax.Array, radius: float) -> jax.Array:
  """``(..., N)`` bool: positions ``(..., N, 2)`` within ``radius`` m of ``goal``."""
  d2 = (xy[..., 0] - goal[..., 0]) ** 2 + (xy[..., 1] - goal[..., 1]) ** 2
  return d2 <= radius**2


def metric_flag(result: MetricResult) -> jax.Array:
  """The event flag of an indicator metric (overlap, offroad): valid and positive."""
  return result.valid & (result.value > 0)


def event_flags(state: SimulatorState, goal: jax.Array, config: RewardConfig,
                metrics: dict[str, MetricResult] | None = None
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(collided, offroad, at_goal)``, each ``(..., N)`` bool, at ``state.timestep``.

  Collision is the registry's ``overlap`` (box overlap with any valid object) and
  off-road its ``offroad``; pass ``metrics`` from ``env.metrics`` to reuse them.
  """
  needed = ('overlap', 'offroad')
  have = {} if metrics is None else {n: metrics[n] for n in needed if n in metrics}
  missing = [n for n in needed if n not in have]
  if missing:
    have.update(registry.run_metrics(state, missing))
  cur = state.current_sim_trajectory
  reached = cur.valid[..., 0] & at_goal(cur.xy[..., 0, :], goal, config.goal_radius)
  return metric_flag(have['overlap']), metric_flag(have['offroad']), reached


def update_status(status: AgentStatus, collided: jax.Array, offroad: jax.Array,
                  reached: jax.Array, config: RewardConfig
                  ) -> tuple[AgentStatus, StepEvents]:
  """Advances the status by one step from the flags measured after it.

  Args:
    status: before the step.
    collided, offroad, reached: ``(..., N)`` bool after the step (:func:`event_flags`).
    config: terminal behaviours.

  Returns:
    ``(status after the step, StepEvents)``. Only agents alive before the step have
    events, and each kind of event happens at most once per agent and episode.
  """
  alive = status.alive
  collision = alive & collided & ~status.collided
  off = alive & offroad & ~status.offroad
  goal = alive & reached & ~status.goal_reached
  if not config.goal_after_infraction:
    goal = goal & ~(status.collided | status.offroad | collision | off)
  events = {'goal': (goal, config.after_goal),
            'collision': (collision, config.after_collision),
            'offroad': (off, config.after_offroad)}
  remove = jnp.zeros_like(alive)
  freeze = jnp.zeros_like(alive)
  for flag, behaviour in events.values():
    if behaviour == 'remove':
      remove = remove | flag
    elif behaviour == 'freeze':
      freeze = freeze | flag
  freeze = freeze & ~remove  # Removal wins when both happen at once.
  done = remove | freeze
  new = AgentStatus(
      alive=alive & ~done, frozen=status.frozen | freeze, removed=status.removed | remove,
      goal_reached=status.goal_reached | goal, collided=status.collided | collision,
      offroad=status.offroad | off, started_at_goal=status.started_at_goal)
  return new, StepEvents(acted=alive, goal=goal, collision=collision, offroad=off,
                         done=done)


def log_offroad(state: SimulatorState, start: int, stop: int) -> jax.Array:
  """``(..., N)`` bool: the LOGGED trajectory is off road (the simulator's ``offroad``
  metric, Waymax's box-corner rule) at some valid step of ``start .. stop - 1`` (static
  ints).

  The off-road exemption of :class:`RewardConfig` (``exempt_log_offroad``). Measured
  on the log at the simulator's own rule and at every step, as the episode measures
  the simulated agents, so the exemption and the penalty agree on what "off road"
  means.
  """
  steps = jnp.arange(start, stop, dtype=jnp.int32)
  replay = state.replace(sim_trajectory=state.log_trajectory)

  def at(t):
    # The metric reads each state's own timestep: one per batch entry.
    now = replay.replace(timestep=jnp.full(replay.timestep.shape, t, jnp.int32))
    return metric_flag(registry.run_metrics(now, ['offroad'])['offroad'])

  return jnp.any(jax.lax.map(at, steps), axis=0)


def task_reward(collided: jax.Array, offroad: jax.Array, goal_reached: jax.Array,
                alive: jax.Array, config: RewardConfig) -> jax.Array:
  """``w_goal 1[goal] - w_col 1[collided] - w_off 1[offroad]`` where ``alive``, else 0.

  All inputs ``(..., N)`` bool (e.g. the fields of :class:`StepEvents`, with
  ``alive = events.acted``); returns float32 ``(..., N)``.
  """
  r = (config.goal_weight * goal_reached.astype(jnp.float32)
       - config.collision_weight * collided.astype(jnp.float32)
       - config.offroad_weight * offroad.astype(jnp.float32))
  return jnp.where(alive, r, 0.0)


def goal_distance(xy: jax.Array, goal: jax.Array) -> jax.Array:
  """``(..., N)`` metres from positions ``(..., N, 2)`` to ``goal (..., N, 2)``."""
  return jnp.sqrt((xy[..., 0] - goal[..., 0]) ** 2 + (xy[..., 1] - goal[..., 1]) ** 2)


def progress_reward(before: jax.Array, after: jax.Array, start: jax.Array,
                    alive: jax.Array, config: RewardConfig) -> jax.Array:
  """The goal-progress term of one step (``RewardConfig.progress_weight``).

  Args:
    before, after: ``(..., N)`` distance to the goal (m) before / after the step.
    start: ``(..., N)`` distance at the start of the episode (m).
    alive: ``(..., N)`` bool, the agents that acted.
    config: its weight and ``progress_min_distance``.

  Returns:
    float32 ``(..., N)``, 0 where not alive.
  """
  scale = jnp.maximum(start, config.progress_min_distance)
  return jnp.where(alive, config.progress_weight * (before - after) / scale, 0.0)


def spacer_reward(task: jax.Array, ref_log_prob: jax.Array, alive: jax.Array,
                  likelihood_weight: float | jax.Array) -> jax.Array:
  """``task + alpha * log p_ref(a_t)`` where ``alive``, else 0; all ``(..., N)``.

  ``likelihood_weight`` is alpha (``spacer.train.Anchor.likelihood_weight``; the paper
  sweeps 0, 0.001, 0.01, 0.1 and 0.1 collapses entropy and realism).
  """
  return jnp.where(alive, task + likelihood_weight * ref_log_prob, 0.0)


def step_reward(events: StepEvents, ref_log_prob: jax.Array, config: RewardConfig,
                likelihood_weight: float | jax.Array) -> jax.Array:
  """The full per-step SPACER reward ``(..., N)`` from :func:`update_status`'s events."""
  task = task_reward(events.collision, events.offroad, events.goal, events.acted, config)
  return spacer_reward(task, ref_log_prob, events.acted, likelihood_weight)
