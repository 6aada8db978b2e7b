"""Car following as a tested capability: a unit scene set and its closed-loop score.

Each scene is one single-lane road (4 m between its edges, straight or a left bend)
with a *leader* replaying its log and a *follower* driven by the sim-agent policy under
test (the only modeled object; ``follow_env`` controls modeled objects only). At the
current step (1.0 s) the follower drives at ``speed`` along the lane; the leader is
ahead, bumper to bumper ``gap`` metres, and

* ``stopped``: stands still for the whole episode (a stalled car);
* ``braking``: drives at the follower's speed and brakes at ``decel`` from the current
  step to a stop;
* ``slower``: drives at ``leader_speed`` throughout;
* ``queue``: is the last of three cars stopped 7 m apart at a red light (the light
  shows red throughout at the first car's front).

Gaps are chosen from time: a stopped or queued leader ``speed * ttc`` ahead, a slower
one ``(speed - leader_speed) * ttc``, a braking one at ``headway`` seconds; so every
case can be driven without contact at no more than about 5 m/s^2. The follower's log
future (used by nothing here but the log-replay sanity check) slows smoothly behind.

:func:`score_following` counts, per scene and rollout, contact between the follower and
any other object and whether the follower stayed behind its leader, its smallest gap
and its final speed.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax
import numpy as np

from spacer_jax.eval.sim_agents import closed_loop_fn
from spacer_jax.sim import builders
from spacer_jax.sim.config import ControlledObjects, EnvConfig
from spacer_jax.sim.datatypes import SimulatorState, TrafficLightStates
from spacer_jax.sim.dynamics import get_dynamics_model
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.sim.geometry import box_pair_margins

NUM_STEPS = 91
CURRENT = 10  # the current step (1.0 s)
DT = 0.1
LENGTH, WIDTH = 4.6, 2.0  # every car (m)
HALF_LANE = 2.0  # metres from the lane centre to each road edge
QUEUE_SPACING = 7.0  # metres between queued cars' centres
LEADER, FOLLOWER = 0, 1  # object rows; queued cars follow


@dataclasses.dataclass(frozen=True)
class FollowCase:
  """One scene of the set (module doc).

  Attributes:
    leader: 'stopped', 'braking', 'slower' or 'queue'.
    speed: the follower's speed at the current step (m/s).
    gap: bumper-to-bumper distance to the leader at the current step (m).
    radius: 0 for a straight road, else the radius of a left bend (m).
    leader_speed: the slower leader's speed (m/s).
    decel: the braking leader's deceleration (m/s^2).
  """

  leader: str
  speed: float
  gap: float
  radius: float = 0.0
  leader_speed: float = 0.0
  decel: float = 0.0

  def __post_init__(self):
    if self.leader not in ('stopped', 'braking', 'slower', 'queue'):
      raise ValueError(f"FollowCase.leader must be 'stopped', 'braking', 'slower' or "
                       f"'queue', got {self.leader!r}.")
    if self.speed <= 0 or self.gap <= 0 or self.radius < 0:
      raise ValueError(f'FollowCase needs speed > 0, gap > 0, radius >= 0, got {self}.')

  @property
  def name(self) -> str:
    road = 'straight' if not self.radius else f'bend{self.radius:.0f}'
    return f'{self.leader}_v{self.speed:.0f}_gap{self.gap:.0f}_{road}'


def default_cases(speeds=(10.0, 20.0, 30.0), radii=(0.0, 150.0)) -> list[FollowCase]:
  """The issue's grid: each leader kind at several speeds (up to 30 m/s) and gaps,
  straight and in a bend (stopped / queued leader at 4 and 7 s to contact, a braking
  one at 1.5 and 2.5 s headway braking at 4 m/s^2, a half-speed one at 4 and 8 s)."""
  cases = []
  for v, r in itertools.product(speeds, radii):
    for ttc in (4.0, 7.0):
      cases.append(FollowCase('stopped', v, v * ttc, r))
      cases.append(FollowCase('queue', v, v * ttc, r))
    for headway in (1.5, 2.5):
      cases.append(FollowCase('braking', v, v * headway, r, decel=4.0))
    for ttc in (4.0, 8.0):
      cases.append(FollowCase('slower', v, 0.5 * v * ttc, r, leader_speed=0.5 * v))
  return cases


def _pose_at(radius: float, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Centre-lane pose ``(x, y, yaw)`` at arc lengths ``s``: straight before s = 0, then
  (``radius`` > 0) a left bend of that radius."""
  if not radius:
    return s, np.zeros_like(s), np.zeros_like(s)
  theta = np.clip(s, 0, None) / radius
  x = np.where(s < 0, s, radius * np.sin(theta))
  y = np.where(s < 0, 0.0, radius * (1 - np.cos(theta)))
  return x, y, theta


def _leader_arc(case: FollowCase, t: np.ndarray, s0: float) -> np.ndarray:
  """The leader's arc length over time ``t`` (s, 0 = the current step)."""
  if case.leader in ('stopped', 'queue'):
    return np.full_like(t, s0)
  if case.leader == 'slower':
    return s0 + case.leader_speed * t
  # Braking from the follower's speed from t = 0, constant before.
  stop = case.speed / case.decel
  tb = np.clip(t, 0, stop)
  return s0 + np.where(t < 0, case.speed * t, case.speed * tb - 0.5 * case.decel * tb ** 2)


def _follower_arc(case: FollowCase, t: np.ndarray, leader: np.ndarray) -> np.ndarray:
  """The follower's logged arc length: constant speed until the current step, then a
  smooth slow-down that keeps 3 m behind the leader (its log: a careful human)."""
  out = case.speed * t  # 0 at the current step
  pos, vel = 0.0, case.speed
  for i in np.flatnonzero(t > 0):
    room = max(leader[i - 1] - LENGTH - 3.0 - pos, 0.0)
    # The speed that stops within the room at 4 m/s^2, reached at most 6 m/s^2 a step.
    target = min(case.speed, np.sqrt(2.0 * 4.0 * room))
    vel = max(0.0, max(vel - 6.0 * DT, min(target, vel + 2.0 * DT)))
    pos += vel * DT
    out[i] = pos
  return out


def follow_scene(case: FollowCase, num_objects: int = 8, num_points: int = 6000,
                 with_leader: bool = True) -> SimulatorState:
  """The scene of one case (module doc), un-reset; object 0 the leader, object 1 the
  follower (modeled, and the SDC: ``MODELED`` control takes the SDC too), queued cars
  after them. ``with_leader=False`` marks the leader and queue invalid (the ablation:
  what the follower does on the same road alone)."""
  t = (np.arange(NUM_STEPS) - CURRENT) * DT
  s_lead0 = case.gap + LENGTH  # centre to centre at the current step
  lead = _leader_arc(case, t, s_lead0)
  arcs = [lead, _follower_arc(case, t, lead)]
  if case.leader == 'queue':
    arcs += [lead + QUEUE_SPACING * k for k in (1, 2)]
  xs, ys, yaws = zip(*(_pose_at(case.radius, a) for a in arcs))
  n = len(arcs)
  valid = np.ones((n, NUM_STEPS), bool)
  if not with_leader:
    valid[np.arange(n) != FOLLOWER] = False
  traj = builders.trajectory_from_arrays(
      np.stack(xs), np.stack(ys), np.stack(yaws), valid,
      length=np.full(n, LENGTH), width=np.full(n, WIDTH), num_objects=num_objects)
  modeled = np.zeros(n, bool)
  modeled[FOLLOWER] = True
  meta = builders.metadata_from_arrays(np.ones(n, np.int32), num_objects=num_objects,
                                       sdc_index=FOLLOWER, is_modeled=modeled)
  end = float(max(a.max() for a in arcs)) + 100.0
  centre = np.stack(_pose_at(case.radius, np.arange(-case.speed * 1.5 - 50.0, end, 1.0))[:2],
                    1)
  d = np.gradient(centre, axis=0)
  normal = np.stack([-d[:, 1], d[:, 0]], 1) / np.linalg.norm(d, axis=1, keepdims=True)
  polylines = [builders.Polyline(centre - HALF_LANE * normal, 15, 1),
               builders.Polyline((centre + HALF_LANE * normal)[::-1], 15, 2),
               builders.Polyline(centre, 2, 3)]
  # Sampled every 0.5 m as the generator's (and WOMD's) maps are.
  road = builders.roadgraph_from_polylines(polylines, num_points=num_points, spacing=0.5)
  lights = None
  if case.leader == 'queue':
    stop = _pose_at(case.radius, np.array([arcs[-1][0] + LENGTH / 2 + 1.0]))
    lights = builders.traffic_lights_from_arrays(
        np.full((1, NUM_STEPS), stop[0][0]), np.full((1, NUM_STEPS), stop[1][0]),
        np.full((1, NUM_STEPS), TrafficLightStates.STOP), np.full((1, NUM_STEPS), 3),
        np.ones((1, NUM_STEPS), bool))
  return builders.make_state(traj, meta, road, log_traffic_light=lights)


def follow_scenes(cases: list[FollowCase], num_objects: int = 8, num_points: int = 6000,
                  with_leader: bool = True) -> SimulatorState:
  """The scenes of ``cases`` stacked on a batch axis ``(C,)``."""
  return builders.stack_states([follow_scene(c, num_objects, num_points, with_leader)
                                for c in cases])


def follow_env() -> MultiAgentEnvironment:
  """Only modeled objects and the SDC (both the follower) are controlled; the leaders
  replay their log."""
  return MultiAgentEnvironment(get_dynamics_model('delta_global'),
                               EnvConfig(controlled_object=ControlledObjects.MODELED,
                                         metrics=('overlap',), rewards={}))


def score_following(final: SimulatorState, start: int = CURRENT) -> dict[str, np.ndarray]:
  """Per scene of a rolled-out batch ``(..., C)``: ``contact`` (the follower's box
  overlapped any other object's at some step), ``behind`` (it never passed its leader
  along the leader's heading), ``min_gap`` (smallest centre distance to the leader
  minus a car length, m) and ``final_speed`` (m/s). Host-side arrays ``(..., C)``."""
  sim = final.sim_trajectory
  w = lambda a: np.asarray(a[..., start:])
  x, y, yaw, valid = w(sim.x), w(sim.y), w(sim.yaw), w(sim.valid)
  f = lambda a: a[..., FOLLOWER:FOLLOWER + 1, :]
  margins = np.asarray(box_pair_margins(
      f(x), f(y), LENGTH, WIDTH, f(yaw), x, y, LENGTH, WIDTH, yaw))  # (..., N, T, 4)
  others = np.arange(x.shape[-2]) != FOLLOWER
  touching = (margins.min(-1) > 0) & valid & f(valid) & others[:, None]
  lead = lambda a: a[..., LEADER, :]
  ahead = ((lead(x) - f(x)[..., 0, :]) * np.cos(lead(yaw))
           + (lead(y) - f(y)[..., 0, :]) * np.sin(lead(yaw)))
  speed = np.hypot(np.diff(x[..., FOLLOWER, :], axis=-1), np.diff(y[..., FOLLOWER, :],
                                                                  axis=-1)) / DT
  return {'contact': touching.any((-1, -2)), 'behind': (ahead > 0).all(-1),
          'min_gap': np.hypot(lead(x) - f(x)[..., 0, :],
                              lead(y) - f(y)[..., 0, :]).min(-1) - LENGTH,
          'final_speed': speed[..., -1]}


def run_following(policy: Any, params: Any, cases: list[FollowCase], rng: jax.Array, *,
                  vocab: Any, rollouts: int = 8, num_steps: int = 40,
                  scenes: SimulatorState | None = None) -> dict[str, Any]:
  """Closed-loop rollouts of every case (``rollouts`` each) with ``policy`` driving the
  follower; the per-case and overall rates of :func:`score_following`.

  Returns ``{'cases': {name: {'no_contact': rate, 'behind': rate, 'min_gap': mean m,
  'final_speed': mean m/s}}, 'no_contact': overall rate, 'rollouts': R}``.
  """
  scenes = follow_scenes(cases) if scenes is None else scenes
  env = follow_env()
  run = closed_loop_fn(policy, env=env, vocab=vocab, num_steps=num_steps)
  per = [score_following(run(params, scenes, jax.random.fold_in(rng, r)).final_state)
         for r in range(rollouts)]
  stacked = {k: np.stack([p[k] for p in per]) for k in per[0]}  # (R, C)
  table = {c.name: {'no_contact': float(1 - stacked['contact'][:, i].mean()),
                    'behind': float(stacked['behind'][:, i].mean()),
                    'min_gap': float(stacked['min_gap'][:, i].mean()),
                    'final_speed': float(stacked['final_speed'][:, i].mean())}
           for i, c in enumerate(cases)}
  return {'cases': table, 'no_contact': float(1 - stacked['contact'].mean()),
          'behind': float(stacked['behind'].mean()), 'rollouts': rollouts}


__all__ = ['FollowCase', 'default_cases', 'follow_env', 'follow_scene', 'follow_scenes',
           'run_following', 'score_following']
