"""Closed-loop planner study: every ego planner under every kind of sim agent.

For each sim-agent *mode* (e.g. log replay, the reference model, SPACER) and each ego
planner, :func:`run_planner_study` rolls the scenarios out with
:func:`spacer_jax.eval.sim_agents.closed_loop_rollout` (the planner drives the SDC, the
mode's policy everything else), scores every episode with
:func:`spacer_jax.eval.planner_metrics.score_closed_loop`, and summarises:

* per planner x mode: mean PDM-style score and sub-scores, at-fault collision rate,
  false-positive collisions (the sim agent at fault), collision rate;
* per mode: the planners ranked by mean score;
* between modes: Spearman and Kendall rank correlations of the planners' mean scores
  (the paper's question: do planner rankings agree across sim-agent modes?).

Progress (EP) is measured against, per mode and scenario, the best progress of any
planner with no at-fault collision and no off-road (NAVSIM compares with the best
PDM-Closed proposal), or of the log if larger; ``progress_reference='log'`` uses the
log alone. All planners of a mode share the rollout key (common random numbers).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spacer_jax.eval import planner_metrics
from spacer_jax.eval.planner_metrics import EpisodeScores, PDMConfig
from spacer_jax.eval.planners import EgoPlanner
from spacer_jax.sim.datatypes import SimulatorState
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.tokens.vocabulary import TokenVocabulary

# Mean-over-episodes columns of the study table, in order.
SCORE_COLUMNS = ('score', 'no_at_fault_collision', 'drivable_area_compliance',
                 'ttc_within_bound', 'ego_progress', 'comfort', 'progress')
RATE_COLUMNS = ('at_fault_collision_rate', 'collision_rate', 'false_positive_rate',
                'false_positive_collisions', 'episodes')


@dataclasses.dataclass
class PlannerStudy:
  """The outcome of :func:`run_planner_study` (host-side, plain Python).

  Attributes:
    planners: planner names, in the given order.
    modes: sim-agent mode names, in the given order.
    table: ``table[mode][planner]`` -> column -> value: the means of
      :data:`SCORE_COLUMNS` over valid episodes (``progress`` in metres), and
      ``at_fault_collision_rate`` / ``collision_rate`` / ``false_positive_rate``
      (fractions of episodes), ``false_positive_collisions`` (total count),
      ``episodes`` (valid episodes).
    rankings: ``rankings[mode]``: planner names, best mean score first (ties keep the
      given order).
    correlations: one entry per pair of modes: ``{'modes': (a, b), 'spearman': rho,
      'kendall': tau}`` over the planners' mean scores (NaN with fewer than 2 planners
      or constant scores).
    episodes: ``episodes[mode][planner]`` -> column -> per-scenario list (the raw
      :class:`EpisodeScores`).
  """

  planners: list[str]
  modes: list[str]
  table: dict[str, dict[str, dict[str, float]]]
  rankings: dict[str, list[str]]
  correlations: list[dict[str, Any]]
  episodes: dict[str, dict[str, dict[str, list]]]

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready (NaN becomes None)."""
    clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v
    return {
        'planners': list(self.planners), 'modes': list(self.modes),
        'table': {m: {p: {k: clean(v) for k, v in row.items()} for p, row in t.items()}
                  for m, t in self.table.items()},
        'rankings': {m: list(r) for m, r in self.rankings.items()},
        'correlations': [{'modes': list(c['modes']), 'spearman': clean(c['spearman']),
                          'kendall': clean(c['kendall'])} for c in self.correlations],
        'episodes': self.episodes,
    }

  def to_markdown(self) -> str:
    """One table per mode (planners in rank order), then the rank correlations."""
    lines = []
    cols = ('score', 'no_at_fault_collision', 'drivable_area_compliance',
            'ttc_within_bound', 'ego_progress', 'comfort', 'at_fault_collision_rate',
            'false_positive_collisions', 'episodes')
    short = ('score', 'NC', 'DAC', 'TTC', 'EP', 'C', 'at-fault rate', 'FP collisions',
             'episodes')
    for mode in self.modes:
      lines += [f'### Sim agents: {mode}', '',
                '| rank | planner | ' + ' | '.join(short) + ' |',
                '|---|---|' + '---|' * len(cols)]
      for rank, planner in enumerate(self.rankings[mode], 1):
        row = self.table[mode][planner]
        cells = [f'{int(row[c])}' if c in ('false_positive_collisions', 'episodes')
                 else f'{row[c]:.3f}' for c in cols]
        lines.append(f'| {rank} | {planner} | ' + ' | '.join(cells) + ' |')
      lines.append('')
    if self.correlations:
      lines += ['### Rank correlation of planner scores between modes', '',
                '| modes | Spearman | Kendall tau-b |', '|---|---|---|']
      for c in self.correlations:
        a, b = c['modes']
        lines.append(f"| {a} vs {b} | {c['spearman']:.3f} | {c['kendall']:.3f} |")
      lines.append('')
    return '\n'.join(lines)


def _entries(items: Mapping[str, tuple[Any, Any]] | Sequence[Any], what: str
             ) -> dict[str, tuple[Any, Any]]:
  """``name -> (object, params)`` from a mapping, or from objects with a ``name``
  (params None)."""
  if isinstance(items, Mapping):
    out = {}
    for name, value in items.items():
      if not (isinstance(value, tuple) and len(value) == 2):
        raise ValueError(f'{what}[{name!r}] must be a (object, params) pair, got '
                         f'{type(value).__name__}.')
      out[str(name)] = value
  else:
    out = {}
    for obj in items:
      name = getattr(obj, 'name', None)
      if not name or name in out:
        raise ValueError(f'{what}: every entry needs a distinct name, got {name!r}; pass a '
                         'dict name -> (object, params) instead.')
      out[name] = (obj, None)
  if not out:
    raise ValueError(f'{what} is empty.')
  return out


_offroad_flags = jax.jit(planner_metrics.ego_offroad_flags, static_argnums=(1, 2))
_ROLLOUT_FNS: dict[tuple, tuple[Any, Any]] = {}


def planner_rollout_fn(policy: Any, planner: EgoPlanner, *, env: MultiAgentEnvironment,
                       vocab: TokenVocabulary, num_steps: int,
                       jit_options: Mapping[str, Any] | None = None):
  """The compiled ``(policy_params, state, rng, planner_params) -> ClosedLoopResult`` of
  ``closed_loop_fn`` for a sim-agent policy and an ego planner, cached per (policy,
  planner, environment, vocabulary, length, compiler options): planners that compare
  equal (a parameter grid) share one compilation, across studies too.
  """
  from spacer_jax.eval.sim_agents import closed_loop_fn
  options = tuple(sorted((jit_options or {}).items()))
  key = (policy, planner, id(env), id(vocab), num_steps, options)
  if key not in _ROLLOUT_FNS:
    fn = closed_loop_fn(policy, env=env, vocab=vocab, num_steps=num_steps, ego=planner,
                        jit_options=dict(options) or None)
    _ROLLOUT_FNS[key] = ((env, vocab), fn)  # Holding env and vocab keeps the ids valid.
  return _ROLLOUT_FNS[key][1]


def reference_progress(scores: Mapping[str, EpisodeScores], mode: str = 'best'
                       ) -> jax.Array:
  """EP's denominator per scenario for one mode's planners ``(...)``.

  ``'log'``: the logged SDC's progress. ``'best'``: the larger of that and the best
  progress of any planner without an at-fault collision and off-road (NC * DAC = 1).
  """
  first = next(iter(scores.values()))
  if mode == 'log':
    return first.log_progress
  if mode != 'best':
    raise ValueError(f"progress_reference must be 'best' or 'log', got {mode!r}.")
  best = first.log_progress
  for s in scores.values():
    ok = (s.no_at_fault_collision * s.drivable_area_compliance > 0) & s.valid
    best = jnp.maximum(best, jnp.where(ok, s.progress, -jnp.inf))
  return best


def summarise(scores: EpisodeScores) -> dict[str, float]:
  """Means over valid episodes (module doc's columns)."""
  valid = np.asarray(scores.valid).reshape(-1)
  count = int(valid.sum())
  mean = lambda a: float(np.asarray(a, np.float64).reshape(-1)[valid].mean()) if count else (
      float('nan'))
  row = {c: mean(getattr(scores, c)) for c in SCORE_COLUMNS}
  fp = np.asarray(scores.false_positive_count).reshape(-1)[valid]
  row.update(at_fault_collision_rate=mean(scores.at_fault_collision),
             collision_rate=mean(scores.ego_collision),
             false_positive_rate=float((fp > 0).mean()) if count else float('nan'),
             false_positive_collisions=float(fp.sum()), episodes=float(count))
  return row


def rank_planners(table: Mapping[str, Mapping[str, float]], column: str = 'score'
                  ) -> list[str]:
  """Planner names by descending ``column`` (NaN last; ties keep the given order)."""
  key = lambda name: (-table[name][column] if not math.isnan(table[name][column])
                      else math.inf)
  return sorted(table, key=key)


def run_planner_study(planners: Mapping[str, tuple[EgoPlanner, Any]] | Sequence[EgoPlanner],
                      sim_agent_modes: Mapping[str, tuple[Any, Any]],
                      scenarios: SimulatorState, rng: jax.Array, *,
                      env: MultiAgentEnvironment, vocab: TokenVocabulary, num_steps: int = 40,
                      config: PDMConfig = PDMConfig(), progress_reference: str = 'best',
                      jit_options: Mapping[str, Any] | None = None) -> PlannerStudy:
  """Scores every planner under every sim-agent mode (module doc).

  Args:
    planners: name -> ``(EgoPlanner, params)``, or planners with distinct ``name``s
      (params None). Planners with equal configuration share one compiled rollout, so
      a grid (:func:`spacer_jax.eval.planners.idm_planner_grid`) compiles once per mode.
    sim_agent_modes: name -> ``(SimAgentPolicy, params)`` driving the other objects.
    scenarios: ``SimulatorState`` with batch shape ``(...)`` (reset by the runner).
    rng: PRNG key; mode ``i`` rolls out with ``fold_in(rng, i)`` for every planner.
    env: the environment (it must control the SDC for the planner to drive it).
    vocab: gives the decision step ``S``; planners with a ``steps_per_decision`` must
      match it.
    num_steps: decision steps per episode.
    config: the score's thresholds and weights.
    progress_reference: ``'best'`` or ``'log'`` (:func:`reference_progress`).
    jit_options: compiler options of the rollouts and the scorer (e.g. a low
      ``xla_backend_optimization_level`` in tests).

  Returns:
    :class:`PlannerStudy`.
  """
  planners = _entries(planners, 'planners')
  modes = _entries(sim_agent_modes, 'sim_agent_modes')
  if progress_reference not in ('best', 'log'):
    raise ValueError(f"progress_reference must be 'best' or 'log', got {progress_reference!r}.")
  for name, (planner, _) in planners.items():
    steps = getattr(planner, 'steps_per_decision', vocab.steps_per_token)
    if steps != vocab.steps_per_token:
      raise ValueError(f'planner {name!r} plans {steps} simulator steps per decision, the '
                       f'vocabulary has {vocab.steps_per_token}.')
  start = env.config.init_steps - 1
  score = planner_metrics.episode_scorer(start, start + num_steps * vocab.steps_per_token,
                                         config, jit_options)

  table, rankings, episodes = {}, {}, {}
  for i, (mode, (policy, policy_params)) in enumerate(modes.items()):
    key = jax.random.fold_in(rng, i)
    raw = {}
    for name, (planner, params) in planners.items():
      rollout = planner_rollout_fn(policy, planner, env=env, vocab=vocab,
                                   num_steps=num_steps, jit_options=jit_options)
      result = rollout(policy_params, scenarios, key, params)
      state = result.final_state
      offroad = planner_metrics.ego_offroad_from_metrics(result.metrics,
                                                         state.object_metadata.is_sdc)
      if offroad is None:
        offroad = _offroad_flags(state, start + 1, start + num_steps * vocab.steps_per_token)
      raw[name] = score(state, offroad)
    reference = reference_progress(raw, progress_reference)
    final = {n: s.with_reference_progress(reference, config) for n, s in raw.items()}
    table[mode] = {n: summarise(s) for n, s in final.items()}
    rankings[mode] = rank_planners(table[mode])
    episodes[mode] = {n: {f.name: np.asarray(getattr(s, f.name)).reshape(-1).tolist()
                          for f in dataclasses.fields(s)} for n, s in final.items()}

  correlations = []
  names = list(planners)
  for a, b in itertools.combinations(modes, 2):
    sa = [table[a][n]['score'] for n in names]
    sb = [table[b][n]['score'] for n in names]
    if len(names) >= 2:
      rho, tau = planner_metrics.spearman(sa, sb), planner_metrics.kendall_tau(sa, sb)
    else:
      rho = tau = float('nan')
    correlations.append({'modes': (a, b), 'spearman': rho, 'kendall': tau})
  return PlannerStudy(planners=names, modes=list(modes), table=table, rankings=rankings,
                      correlations=correlations, episodes=episodes)


__all__ = ['RATE_COLUMNS', 'SCORE_COLUMNS', 'PlannerStudy', 'planner_rollout_fn', 'rank_planners',
           'reference_progress', 'run_planner_study', 'summarise']
