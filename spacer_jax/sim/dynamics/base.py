"""The dynamics-model interface and how a step's updates are written into the state.

A dynamics model is a frozen, hashable configuration (it can be a static argument of a
compiled function) with two pure maps:

* ``compute_update``: an :class:`Action` per object plus the current step of the
  trajectory -> a :class:`TrajectoryUpdate` (the next pose and velocity);
* ``inverse``: a logged trajectory and a time index -> the actions that reproduce the
  log from step ``t`` to ``t + 1`` (expert actions, for behaviour cloning and tokenisers).

:func:`apply_trajectory_update` then writes slot ``t + 1`` of the simulated trajectory:
controlled objects take the update, the others replay the log, following Waymax's
validity rules.
"""

from __future__ import annotations

import abc
import dataclasses
import functools

import jax
import jax.numpy as jnp

from spacer_jax.sim.datatypes import (
    INVALID_FLOAT,
    INVALID_INT,
    TIMESTEP_SECONDS,
    Action,
    ObjectMetadata,
    SimulatorState,
    Trajectory,
    TrajectoryUpdate,
    slice_time,
    update_time,
)

# Fields that a step never changes: copied from step t (sizes and height above ground).
_STATIC_FIELDS = ('z', 'length', 'width', 'height')


@dataclasses.dataclass(frozen=True)
class DynamicsModel(abc.ABC):
  """Abstract per-object dynamics: actions <-> next poses.

  Subclasses are frozen dataclasses holding configuration only (no arrays, no mutable
  state), so a model is hashable and can be closed over or passed as a static argument.
  """

  @property
  @abc.abstractmethod
  def action_dim(self) -> int:
    """Number of numbers per object in ``Action.data``."""

  @property
  @abc.abstractmethod
  def action_bounds(self) -> tuple[jax.Array, jax.Array]:
    """``(low, high)``, each ``(action_dim,)`` float32, in the units the model takes."""

  @abc.abstractmethod
  def compute_update(self, action: Action, trajectory: Trajectory) -> TrajectoryUpdate:
    """Next pose and velocity per object.

    Args:
      action: ``data (..., N, action_dim)``, ``valid (..., N, 1)``.
      trajectory: the current step, fields ``(..., N, 1)``.

    Returns:
      A :class:`TrajectoryUpdate` ``(..., N, 1)``; ``valid`` is the action's validity
      AND the object's validity at the current step.
    """

  @abc.abstractmethod
  def inverse(self, log_trajectory: Trajectory, metadata: ObjectMetadata,
              timestep: jax.Array) -> Action:
    """Actions that take the log from ``timestep`` to ``timestep + 1``.

    Args:
      log_trajectory: ``(..., N, T)``.
      metadata: ``(..., N)`` (unused by the built-in models; kept for the interface).
      timestep: int ``(...)``, one index per batch element.

    Returns:
      An :class:`Action` ``data (..., N, action_dim)``, ``valid (..., N, 1)``; invalid
      entries hold 0.
    """


def consecutive_steps(trajectory: Trajectory, timestep: jax.Array
                      ) -> tuple[Trajectory, Trajectory, jax.Array]:
  """Steps ``t`` and ``t + 1`` of a trajectory and where both exist.

  Args:
    trajectory: ``(..., N, T)``.
    timestep: int ``(...)``.

  Returns:
    ``(current, next, valid)``: two trajectories ``(..., N, 1)`` and a bool
    ``(..., N, 1)`` mask, True where the object is valid at both steps and
    ``t + 1`` lies inside the trajectory (``t < 0`` is treated as invalid too).
  """
  timestep = jnp.asarray(timestep, jnp.int32)
  pair = slice_time(trajectory, timestep, 2)
  current = jax.tree_util.tree_map(lambda a: a[..., 0:1], pair)
  nxt = jax.tree_util.tree_map(lambda a: a[..., 1:2], pair)
  # slice_time clamps out-of-range indices; a clamped pair is not a real transition.
  in_range = (timestep >= 0) & (timestep + 1 < trajectory.num_timesteps)
  valid = current.valid & nxt.valid & in_range[..., None, None]
  return current, nxt, valid


def constant_velocity_update(trajectory: Trajectory, dt: float = TIMESTEP_SECONDS
                             ) -> TrajectoryUpdate:
  """Moves each object by its velocity for ``dt`` seconds, heading unchanged.

  Args:
    trajectory: the current step, fields ``(..., N, 1)``.
    dt: step length in seconds.

  Returns:
    A :class:`TrajectoryUpdate` ``(..., N, 1)`` valid where the object is.
  """
  return TrajectoryUpdate(
      x=trajectory.x + trajectory.vel_x * dt, y=trajectory.y + trajectory.vel_y * dt,
      yaw=trajectory.yaw, vel_x=trajectory.vel_x, vel_y=trajectory.vel_y,
      valid=trajectory.valid)


@functools.partial(jax.jit, static_argnames=('use_fallback', 'allow_object_injection', 'dt'))
def apply_trajectory_update(state: SimulatorState, update: TrajectoryUpdate,
                            is_controlled: jax.Array, use_fallback: bool = False,
                            allow_object_injection: bool = False,
                            dt: float = TIMESTEP_SECONDS) -> Trajectory:
  """Writes step ``t + 1`` of the simulated trajectory (``t = state.timestep``).

  Rules (Waymax's):

  * controlled objects take ``update`` (x, y, yaw, vel_x, vel_y); an object whose
    update is invalid becomes invalid, or with ``use_fallback`` keeps its current
    velocity and heading (constant-velocity step) and stays valid if it is valid now;
  * other objects replay the log at ``t + 1``, valid where the log is;
  * unless ``allow_object_injection``, an object can only be valid at ``t + 1`` if it
    is valid at ``t`` (objects never appear mid-episode);
  * z, length, width and height are copied from step ``t`` (from the log at ``t + 1``
    for an injected object, which has no step ``t``);
  * the timestamp comes from the log at ``t + 1``; where the log lacks that step the
    current timestamp advances by one step;
  * invalid entries hold -1 (False for ``valid``).

  Args:
    state: ``SimulatorState`` with batch shape ``(...)``.
    update: ``TrajectoryUpdate`` ``(..., N, 1)`` (only controlled objects are read).
    is_controlled: bool ``(..., N)``.
    use_fallback: constant velocity instead of invalid for invalid updates.
    allow_object_injection: let objects absent at ``t`` appear at ``t + 1``.
    dt: step length in seconds (for the fallback and missing timestamps).

  Returns:
    The new ``sim_trajectory`` ``(..., N, T)``; ``state.timestep`` is not advanced.
    When ``t + 1`` is past the end nothing is written.
  """
  t = jnp.asarray(state.timestep, jnp.int32)
  current = slice_time(state.sim_trajectory, t, 1)
  log_next = slice_time(state.log_trajectory, t + 1, 1)
  controlled = jnp.asarray(is_controlled, bool)[..., None]

  if use_fallback:
    fallback = constant_velocity_update(current, dt)
    update = jax.tree_util.tree_map(
        lambda u, f: jnp.where(update.valid, u, f), update, fallback)
    # The fallback's validity is the object's own: valid now -> still valid.
    update = update.replace(valid=update.valid | current.valid)

  pose = {}
  for name in ('x', 'y', 'yaw', 'vel_x', 'vel_y'):
    pose[name] = jnp.where(controlled, getattr(update, name), getattr(log_next, name))
  valid = jnp.where(controlled, update.valid, log_next.valid)
  if not allow_object_injection:
    valid = valid & current.valid

  static = {name: jnp.where(current.valid, getattr(current, name), getattr(log_next, name))
            for name in _STATIC_FIELDS}
  step_micros = int(round(dt * 1e6))
  timestamp = jnp.where(log_next.valid, log_next.timestamp_micros,
                        current.timestamp_micros + step_micros)

  new_step = Trajectory(
      valid=valid,
      timestamp_micros=jnp.where(valid, timestamp, INVALID_INT).astype(jnp.int32),
      **{n: jnp.where(valid, v, INVALID_FLOAT).astype(jnp.float32)
         for n, v in {**pose, **static}.items()})
  return update_time(state.sim_trajectory, t + 1, new_step)


def zero_invalid(action: Action) -> jax.Array:
  """``action.data`` with invalid rows set to 0 so NaNs cannot leak into valid math."""
  return jnp.where(action.valid, action.data, 0.0)
