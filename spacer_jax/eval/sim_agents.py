"""Closed-loop sim agents: one policy interface, one runner, realism rollouts.

Every sim-agent policy acts at the token rate. One *decision step* is ``S`` simulator
steps (``S = vocab.steps_per_token``, 2 = 0.2 s); the episode starts at the current step
``init_steps - 1`` (10 in WOMD, set by ``MultiAgentEnvironment.reset``) and runs
``num_steps`` decision steps (40 = 8 s). At each decision step:

1. ``motion = policy.propose(params, carry, state, key)``: every object's next ``S``
   sub-step poses and velocities (a :class:`Motion`);
2. with an ego planner, the SDC's row (``object_metadata.is_sdc``) of the motion is
   replaced by ``ego.plan(...)``'s one-row motion;
3. the runner applies the ``S`` sub-steps with ``env.step_with_update`` (objects the
   environment does not control replay the log) and computes ``env.metrics`` after
   each;
4. ``carry = policy.observe(params, carry, prev_state, state)``: the policy sees what
   every object actually did (an overridden ego included), so reactive policies react
   to the planner.

Random keys: decision step ``i`` hands the policy ``jax.random.split(rng, num_steps)[i]``
(the keys :func:`spacer_jax.models.rollout.reference_rollout` uses, so the reference
policy reproduces it); ``init`` and the ego planner get keys folded off ``rng``.

Realism evaluation (WOSAC): :func:`realism_rollouts` vmaps :func:`closed_loop_rollout`
over ``R`` keys (32 in the challenge) and returns the simulated future in the shape
:func:`spacer_jax.eval.realism.compute_realism` reads, ``(R, ..., N, 80)``.

Beyond the shared contract (backward-compatible): ``Motion.valid`` may also be per
sub-step ``(..., N, S)``; ``SimAgentPolicy.num_params`` takes optional ``params``;
``SimAgentPolicy.check(env, vocab, num_steps)`` lets a policy reject a runner setting;
a road-edge index already in the input state is kept instead of rebuilt.

Concrete policies (log replay, constant velocity, IDM, the reference model, trained
PPO / HR-PPO / SPACER policies) and ``load_policy`` live in
:mod:`spacer_jax.eval.sim_agent_policies`; they are also importable from here.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from spacer_jax.parallel.mesh import DATA_AXIS, check_divisible
from spacer_jax.sim.datatypes import SimulatorState, Trajectory, TrajectoryUpdate
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.sim.metrics.base import MetricResult
from spacer_jax.tokens.vocabulary import TokenVocabulary

if TYPE_CHECKING:  # The planners module imports this one; keep the import one-way.
  from spacer_jax.eval.planners import EgoPlanner

# Folded into the rollout key for the keys of ``init`` and of the ego planner, so that
# the policy's per-step keys stay ``split(rng, num_steps)``.
_INIT_SALT = 0x51A6


@struct.dataclass
class Motion:
  """Every object's motion over one decision step of ``S`` simulator steps.

  The same triple ``TokenEnvironment.execute`` returns.

  Attributes:
    poses: ``(..., N, S, 3)`` world-frame (x m, y m, yaw rad) at sub-steps ``1 .. S``.
    velocities: ``(..., N, S, 2)`` world-frame (vel_x, vel_y), m/s.
    valid: ``(..., N)`` bool, the object exists after the step; or (an extension the
      runner also accepts) ``(..., N, S)`` per sub-step, e.g. for a log that ends
      between two decision boundaries.
  """

  poses: jax.Array
  velocities: jax.Array
  valid: jax.Array

  @property
  def steps(self) -> int:
    """S, sub-steps per decision step."""
    return self.poses.shape[-2]

  def substep_valid(self) -> jax.Array:
    """Validity per sub-step, ``(..., N, S)`` bool."""
    valid = jnp.asarray(self.valid, bool)
    if valid.ndim == self.poses.ndim - 2:
      valid = jnp.broadcast_to(valid[..., None], valid.shape + (self.steps,))
    return valid

  def check(self, batch: tuple[int, ...], num_objects: int, steps: int,
            what: str = 'Motion') -> None:
    """Raises ``ValueError`` naming the field unless shapes are ``batch + (N, S, ...)``."""
    want = {'poses': (*batch, num_objects, steps, 3),
            'velocities': (*batch, num_objects, steps, 2)}
    for name, shape in want.items():
      got = tuple(getattr(self, name).shape)
      if got != shape:
        raise ValueError(f'{what}.{name} has shape {got}, expected {shape} '
                         '(batch + (num_objects, steps_per_token, ...)).')
    got = tuple(jnp.shape(self.valid))
    if got not in ((*batch, num_objects), (*batch, num_objects, steps)):
      raise ValueError(f'{what}.valid has shape {got}, expected {(*batch, num_objects)} '
                       f'or {(*batch, num_objects, steps)}.')


@dataclasses.dataclass(frozen=True, eq=False)
class SimAgentPolicy(abc.ABC):
  """A policy that moves every object one decision step at a time.

  Frozen configuration only; every method is a pure, jittable function of its
  arguments. The policy object is a static argument of the compiled runners and a key
  of :func:`realism_rollouts`' cache, so equal policies share one compiled program:
  equality and hash must cover every setting the program depends on. Subclasses are
  frozen dataclasses with the generated field-wise ``__eq__`` / ``__hash__``; fields
  that cannot hash (arrays) need their own (:class:`ReferencePolicy` digests its
  vocabularies). This base class itself compares by identity (``eq=False``), so a
  subclass that opts out of equality is recompiled per object rather than silently
  sharing another configuration's program. Parameters are never part of a policy:
  the runners take them as arguments.

  Attributes:
    name: a short label (class attribute).
  """

  name: ClassVar[str] = 'policy'

  def num_params(self, params: Any = None) -> int:
    """Learned parameters (0 for scripted agents); ``params`` is optional."""
    del params
    return 0

  def check(self, env: MultiAgentEnvironment, vocab: TokenVocabulary,
            num_steps: int) -> None:
    """Static compatibility checks the runner calls at trace time (default: none).

    Raises:
      ValueError: the policy cannot run with this environment, vocabulary or length.
    """
    del env, vocab, num_steps

  def init(self, params: Any, state: SimulatorState, rng: jax.Array) -> Any:
    """The carry at the current step; ``state`` is already reset, batch ``(...)``."""
    del params, state, rng
    return ()

  @abc.abstractmethod
  def propose(self, params: Any, carry: Any, state: SimulatorState,
              rng: jax.Array) -> Motion:
    """Every object's next ``S`` sub-steps from ``state`` (at a decision boundary)."""

  def observe(self, params: Any, carry: Any, prev_state: SimulatorState,
              state: SimulatorState) -> Any:
    """The carry after the runner executed the (possibly overridden) motion from
    ``prev_state`` to ``state`` (``S`` steps later). Default: unchanged."""
    del params, prev_state, state
    return carry


@struct.dataclass
class ClosedLoopResult:
  """A closed-loop rollout of ``R = num_steps`` decision steps.

  Attributes:
    final_state: the ``SimulatorState`` after the rollout (timestep
      ``init_steps - 1 + R S``); its ``sim_trajectory`` holds the log up to the current
      step and the simulation after it (-1 / invalid beyond the rollout).
    metrics: the environment's metrics after every simulator step, name ->
      ``MetricResult`` with value and valid ``(..., R, S, N)``.
  """

  final_state: SimulatorState
  metrics: dict[str, MetricResult]


def override_rows(motion: Motion, rows: Motion, mask: jax.Array) -> Motion:
  """``motion`` with the objects where ``mask (..., N)`` replaced by ``rows``.

  ``rows`` has one row (``(..., 1, S, 3)`` etc., broadcast over objects); validity
  becomes per sub-step ``(..., N, S)``.
  """
  pick = jnp.asarray(mask, bool)
  return Motion(
      poses=jnp.where(pick[..., None, None], rows.poses, motion.poses),
      velocities=jnp.where(pick[..., None, None], rows.velocities, motion.velocities),
      valid=jnp.where(pick[..., None], rows.substep_valid(), motion.substep_valid()))


def apply_motion(env: MultiAgentEnvironment, state: SimulatorState, motion: Motion
                 ) -> tuple[SimulatorState, dict[str, MetricResult]]:
  """Runs the motion's ``S`` sub-steps with ``env.step_with_update``.

  Returns ``(state S steps later, metrics (..., S, N))``; the environment's rules apply
  (only controlled objects follow the motion, no object appears mid-episode).
  """
  def substep(state, xs):
    pose, vel, valid = xs
    update = TrajectoryUpdate(
        x=pose[..., 0:1], y=pose[..., 1:2], yaw=pose[..., 2:3], vel_x=vel[..., 0:1],
        vel_y=vel[..., 1:2], valid=valid[..., None])
    state = env.step_with_update(state, update)
    return state, env.metrics(state)

  # A scan, not a Python loop: the step and its metrics are compiled once, not S times.
  xs = (jnp.moveaxis(motion.poses, -2, 0), jnp.moveaxis(motion.velocities, -2, 0),
        jnp.moveaxis(motion.substep_valid(), -1, 0))
  state, metrics = jax.lax.scan(substep, state, xs)
  return state, jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, -2), metrics)


def check_horizon(env: MultiAgentEnvironment, vocab: TokenVocabulary, num_timesteps: int,
                  num_steps: int) -> int:
  """The first decision boundary ``init_steps - 1`` after checking that ``num_steps``
  decision steps of ``S`` fit in a log of ``num_timesteps`` (raises ``ValueError``)."""
  s = vocab.steps_per_token
  t0 = env.config.init_steps - 1
  max_steps = (num_timesteps - 1 - t0) // s
  if not 1 <= num_steps <= max_steps:
    raise ValueError(f'num_steps={num_steps} must be in [1, {max_steps}]: decision steps '
                     f'of {s} simulator steps from step {t0} in a log of {num_timesteps} '
                     'steps.')
  return t0


def _closed_loop(policy: SimAgentPolicy, params: Any, state: SimulatorState, rng: jax.Array,
                 vocab: TokenVocabulary, ego_params: Any, *, env: MultiAgentEnvironment,
                 num_steps: int, ego: Optional[EgoPlanner]) -> ClosedLoopResult:
  check_horizon(env, vocab, state.log_trajectory.num_timesteps, num_steps)
  policy.check(env, vocab, num_steps)
  s = vocab.steps_per_token
  index = state.road_edge_index
  state = env.reset(state)
  if index is not None and env.config.build_road_edge_index:
    # The index depends on the roadgraph only: keep the caller's (e.g. from an earlier
    # reset), so the rebuild is dead code and compiled away.
    state = state.replace(road_edge_index=index)
  batch, n = state.shape, state.num_objects
  step_keys = jax.random.split(rng, num_steps)
  init_key, ego_init_key, ego_key = jax.random.split(jax.random.fold_in(rng, _INIT_SALT), 3)
  ego_keys = jax.random.split(ego_key, num_steps)
  carry = policy.init(params, state, init_key)
  ego_carry = None if ego is None else ego.init(ego_params, state, ego_init_key)
  is_sdc = state.object_metadata.is_sdc

  def body(loop, keys):
    sim, carry, ego_carry = loop
    key, ego_key = keys
    with jax.named_scope(f'{policy.name}_propose'):
      motion = policy.propose(params, carry, sim, key)
    motion.check(batch, n, s, f'{policy.name}.propose(...)')
    if ego is not None:
      with jax.named_scope('ego_plan'):
        ego_carry, ego_motion = ego.plan(ego_params, ego_carry, sim, ego_key)
      ego_motion.check(batch, 1, s, f'{getattr(ego, "name", "ego")}.plan(...)')
      motion = override_rows(motion, ego_motion, is_sdc)
    with jax.named_scope('sim'):
      new, metrics = apply_motion(env, sim, motion)
    with jax.named_scope(f'{policy.name}_observe'):
      carry = policy.observe(params, carry, sim, new)
    return (new, carry, ego_carry), metrics

  (state, _, _), metrics = jax.lax.scan(body, (state, carry, ego_carry),
                                        (step_keys, ego_keys))
  metrics = jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, -3), metrics)
  return ClosedLoopResult(final_state=state, metrics=metrics)


_STATIC = ('policy', 'env', 'num_steps', 'ego')
_closed_loop_jit = jax.jit(_closed_loop, static_argnames=_STATIC)


def closed_loop_rollout(policy: SimAgentPolicy, params: Any, state: SimulatorState,
                        rng: jax.Array, *, env: MultiAgentEnvironment,
                        vocab: TokenVocabulary, num_steps: int = 40,
                        ego: Optional[EgoPlanner] = None,
                        ego_params: Any = None) -> ClosedLoopResult:
  """Rolls out ``policy`` (and optionally an ego planner) in closed loop (jitted).

  Args:
    policy: the sim-agent policy (static: compiled once per policy object).
    params: its parameters (None for scripted agents).
    state: ``SimulatorState`` with any batch shape ``(...)``; reset here. A road-edge
      index it already carries (from an earlier ``env.reset`` of the same scenes) is
      kept instead of being rebuilt (it costs more than a short rollout).
    rng: PRNG key; the same key gives the same rollout.
    env: the environment (static): who is controlled, which metrics are kept.
    vocab: supplies ``S = vocab.steps_per_token`` simulator steps per decision step.
    num_steps: decision steps (static); 40 covers WOMD's 8 s future.
    ego: optional ``EgoPlanner`` (static) whose one-row motion replaces the SDC's; the
      SDC must be controlled by ``env`` for it to take effect.
    ego_params: the planner's parameters.

  Returns:
    :class:`ClosedLoopResult`.

  Raises:
    ValueError: ``num_steps`` does not fit in the log, a motion has the wrong shape, or
      the policy rejects the environment / vocabulary (:meth:`SimAgentPolicy.check`).
  """
  return _closed_loop_jit(policy, params, state, rng, vocab, ego_params, env=env,
                          num_steps=num_steps, ego=ego)


def closed_loop_fn(policy: SimAgentPolicy, *, env: MultiAgentEnvironment,
                   vocab: TokenVocabulary, num_steps: int = 40,
                   ego: Optional[EgoPlanner] = None,
                   jit_options: Optional[dict] = None) -> Callable[..., ClosedLoopResult]:
  """A compiled ``(params, state, rng, ego_params=None) -> ClosedLoopResult`` with
  everything else fixed (``jit_options`` go to the compiler, e.g. in tests)."""
  fn = functools.partial(_closed_loop, policy, env=env, num_steps=num_steps, ego=ego)
  return jax.jit(lambda params, state, rng, ego_params=None: fn(params, state, rng, vocab,
                                                                ego_params),
                 compiler_options=jit_options)


@functools.lru_cache(maxsize=32)
def _realism_fn(policy: SimAgentPolicy, env: MultiAgentEnvironment, num_steps: int,
                ego: Optional[EgoPlanner], num_rollouts: int,
                jit_options: Optional[tuple], mesh: Optional[Mesh]) -> Callable:
  """The compiled ``(params, state, rng, vocab, ego_params) -> Trajectory`` of
  :func:`realism_rollouts`, cached so repeated calls (batches of scenes) reuse it."""
  start = env.config.init_steps

  def one(params, state, key, vocab, ego_params):
    final = _closed_loop(policy, params, state, key, vocab, ego_params, env=env,
                         num_steps=num_steps, ego=ego).final_state
    return jax.tree_util.tree_map(lambda a: a[..., start:], final.sim_trajectory)

  def rollouts(params, state, keys, vocab, ego_params):
    return jax.vmap(one, in_axes=(None, None, 0, None, None))(params, state, keys, vocab,
                                                               ego_params)

  if mesh is not None:
    # Rollouts are independent given their keys: each device runs its share of the
    # keys on the whole (replicated) scene batch, with no communication.
    rollouts = jax.shard_map(rollouts, mesh=mesh,
                             in_specs=(P(), P(), P(DATA_AXIS), P(), P()),
                             out_specs=P(DATA_AXIS), check_vma=False)

  def many(params, state, rng, vocab, ego_params):
    keys = jax.random.split(rng, num_rollouts)
    return rollouts(params, state, keys, vocab, ego_params)

  return jax.jit(many, compiler_options=None if jit_options is None else dict(jit_options))


def realism_rollouts(policy: SimAgentPolicy, params: Any, state: SimulatorState,
                     rng: jax.Array, num_rollouts: int, *, env: MultiAgentEnvironment,
                     vocab: TokenVocabulary, num_steps: int = 40,
                     ego: Optional[EgoPlanner] = None, ego_params: Any = None,
                     jit_options: Optional[dict] = None,
                     mesh: Optional[Mesh] = None) -> Trajectory:
  """``num_rollouts`` closed-loop rollouts (vmapped over keys) as realism input.

  Compiled once per (policy, env, num_steps, ego, num_rollouts, jit_options, mesh) and
  reused by later calls with the same shapes. With a ``'data'`` mesh
  (``spacer_jax.parallel.make_mesh``) the rollouts are split over its devices (each
  runs ``num_rollouts / devices`` of them on every scene); the result is the same as
  on one device, since a rollout depends only on its own key.

  WOSAC simulates every object valid at the current step for the whole future, so
  ``env`` should control all of them (``ControlledObjects.VALID``, the default): an
  object it leaves to the log drops out where its log ends, which
  ``compute_realism`` counts in ``RealismResult.invalid_sim_steps``.

  Args:
    policy, params, state, env, vocab, num_steps, ego, ego_params: as for
      :func:`closed_loop_rollout`.
    rng: split into ``num_rollouts`` rollout keys.
    num_rollouts: R (32 in WOSAC).
    jit_options: compiler options.
    mesh: optional data mesh; ``num_rollouts`` must be a multiple of its size.

  Returns:
    The simulated future, steps ``init_steps .. T - 1`` (11..90 in WOMD), as a
    ``Trajectory`` ``(R, ..., N, T - init_steps)``: rollouts lead, the layout
    ``compute_realism(log_state, rollouts)`` expects. Steps beyond ``num_steps``
    decision steps are -1 / invalid.
  """
  if num_rollouts < 1:
    raise ValueError(f'num_rollouts must be >= 1, got {num_rollouts}.')
  check_divisible(mesh, num_rollouts=num_rollouts)
  options = None if jit_options is None else tuple(sorted(jit_options.items()))
  run = _realism_fn(policy, env, num_steps, ego, num_rollouts, options, mesh)
  return run(params, state, rng, vocab, ego_params)


def __getattr__(name: str) -> Any:
  # The concrete policies import this module; forward to them lazily (PEP 562).
  from spacer_jax.eval import sim_agent_policies
  if name in sim_agent_policies.__all__:
    return getattr(sim_agent_policies, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = ['ClosedLoopResult', 'Motion', 'SimAgentPolicy', 'apply_motion', 'check_horizon',
           'closed_loop_fn', 'closed_loop_rollout', 'override_rows', 'realism_rollouts']
