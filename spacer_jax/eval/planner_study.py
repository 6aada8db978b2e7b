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
  (the paper's question: do planner rankings agree across sim-agent modes?);
* for every mean, rate and correlation, a scene-level bootstrap interval
  (:mod:`spacer_jax.eval.bootstrap`; 95% by default, the same scene draws for every
  planner and mode).

Stochastic modes roll every scene out ``rollouts`` times (rollout ``r`` of mode ``i``
with ``fold_in(fold_in(rng, i), r)``); modes named in ``deterministic_modes`` (log
replay) once.

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

from spacer_jax.eval import bootstrap, planner_metrics
from spacer_jax.eval.planner_metrics import EpisodeScores, PDMConfig
from spacer_jax.eval.planners import EgoPlanner
from spacer_jax.sim.datatypes import SimulatorState
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.tokens.vocabulary import TokenVocabulary

# Mean-over-episodes columns of the study table, in order.
SCORE_COLUMNS = ('score', 'no_at_fault_collision', 'drivable_area_compliance',
                 'driving_direction_compliance', 'making_progress', 'ttc_within_bound',
                 'ego_progress', 'comfort', 'progress')
RATE_COLUMNS = ('at_fault_collision_rate', 'collision_rate', 'false_positive_rate',
                'false_positive_collisions', 'episodes')
# Columns that get a bootstrap interval: every mean and every rate.
INTERVAL_COLUMNS = SCORE_COLUMNS + ('at_fault_collision_rate', 'collision_rate',
                                    'false_positive_rate')


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
      'kendall': tau, 'spearman_ci': (lo, hi), 'kendall_ci': (lo, hi)}`` over the
      planners' mean scores (NaN with fewer than 2 planners or constant scores).
    intervals: ``intervals[mode][planner][column]`` -> ``(lo, hi)``, the bootstrap
      interval of each :data:`INTERVAL_COLUMNS` entry of ``table``.
    episodes: ``episodes[mode][planner]`` -> column -> per-episode list (the raw
      :class:`EpisodeScores`, rollout-major: ``rollouts[mode] x scenes``).
    rollouts: rollouts per scene of each mode.
    level: the intervals' coverage (0.95).
  """

  planners: list[str]
  modes: list[str]
  table: dict[str, dict[str, dict[str, float]]]
  rankings: dict[str, list[str]]
  correlations: list[dict[str, Any]]
  episodes: dict[str, dict[str, dict[str, list]]]
  intervals: dict[str, dict[str, dict[str, tuple[float, float]]]] = dataclasses.field(
      default_factory=dict)
  rollouts: dict[str, int] = dataclasses.field(default_factory=dict)
  level: float = 0.95

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready (NaN becomes None)."""
    clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v
    pair = lambda ci: [clean(float(ci[0])), clean(float(ci[1]))]
    return {
        'planners': list(self.planners), 'modes': list(self.modes),
        'table': {m: {p: {k: clean(v) for k, v in row.items()} for p, row in t.items()}
                  for m, t in self.table.items()},
        'intervals': {m: {p: {k: pair(ci) for k, ci in row.items()} for p, row in t.items()}
                      for m, t in self.intervals.items()},
        'interval_level': self.level, 'rollouts': dict(self.rollouts),
        'rankings': {m: list(r) for m, r in self.rankings.items()},
        'correlations': [{'modes': list(c['modes']), 'spearman': clean(c['spearman']),
                          'kendall': clean(c['kendall']),
                          'spearman_ci': pair(c.get('spearman_ci', (math.nan,) * 2)),
                          'kendall_ci': pair(c.get('kendall_ci', (math.nan,) * 2))}
                         for c in self.correlations],
        'episodes': self.episodes,
    }

  def to_markdown(self) -> str:
    """One table per mode (planners in rank order), then the rank correlations; the
    score, the false-positive rate and the correlations with their intervals."""
    lines = []
    cols = ('score', 'no_at_fault_collision', 'drivable_area_compliance',
            'driving_direction_compliance', 'making_progress', 'ttc_within_bound',
            'ego_progress', 'comfort', 'at_fault_collision_rate', 'false_positive_rate',
            'false_positive_collisions', 'episodes')
    short = ('score', 'NC', 'DAC', 'DDC', 'MP', 'TTC', 'EP', 'C', 'at-fault rate',
             'FP rate', 'FP collisions', 'episodes')
    with_ci = ('score', 'false_positive_rate')
    pct = f'{100 * self.level:.0f}%'
    ci = lambda lo_hi: f' [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]'
    for mode in self.modes:
      lines += [f'### Sim agents: {mode} ({self.rollouts.get(mode, 1)} rollout(s) per '
                f'scene; [{pct} scene-bootstrap interval])', '',
                '| rank | planner | ' + ' | '.join(short) + ' |',
                '|---|---|' + '---|' * len(cols)]
      for rank, planner in enumerate(self.rankings[mode], 1):
        row = self.table[mode][planner]
        cis = self.intervals.get(mode, {}).get(planner, {})
        cells = [f'{int(row[c])}' if c in ('false_positive_collisions', 'episodes')
                 else f'{row[c]:.3f}' + (ci(cis[c]) if c in with_ci and c in cis else '')
                 for c in cols]
        lines.append(f'| {rank} | {planner} | ' + ' | '.join(cells) + ' |')
      lines.append('')
    if self.correlations:
      lines += [f'### Rank correlation of planner scores between modes [{pct} interval]',
                '', '| modes | Spearman | Kendall tau-b |', '|---|---|---|']
      for c in self.correlations:
        a, b = c['modes']
        lines.append(f"| {a} vs {b} | {c['spearman']:.3f}"
                     f"{ci(c['spearman_ci']) if 'spearman_ci' in c else ''} | "
                     f"{c['kendall']:.3f}{ci(c['kendall_ci']) if 'kendall_ci' in c else ''} |")
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


_offroad_flags = jax.jit(planner_metrics.ego_offroad_flags, static_argnums=(1, 2, 3))
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


def _episode_values(scores: EpisodeScores) -> dict[str, np.ndarray]:
  """Per-episode values of every :data:`INTERVAL_COLUMNS` column, float64 in the
  episodes' shape: the table's entry is their mean over valid episodes."""
  values = {c: getattr(scores, c) for c in SCORE_COLUMNS}
  values.update(at_fault_collision_rate=scores.at_fault_collision,
                collision_rate=scores.ego_collision,
                false_positive_rate=np.asarray(scores.false_positive_count) > 0)
  return {c: np.asarray(v, np.float64) for c, v in values.items()}


def _intervals(scores: EpisodeScores, draws: np.ndarray, level: float
               ) -> tuple[dict[str, tuple[float, float]], np.ndarray]:
  """Bootstrap intervals of one planner x mode's :data:`INTERVAL_COLUMNS` from episodes
  ``(R, S)``, and the resampled mean scores ``(B,)`` (for the rank correlations)."""
  valid = np.asarray(scores.valid)
  means = {c: bootstrap.resampled_means(*bootstrap.per_scene_sums(v, valid), draws)
           for c, v in _episode_values(scores).items()}
  return ({c: bootstrap.percentile_interval(m, level) for c, m in means.items()},
          means['score'])


def _correlation(a: str, b: str, names: list[str], table, resampled, level: float
                 ) -> dict[str, Any]:
  """Spearman and Kendall between modes a and b over the planners' mean scores, with
  their intervals over the paired resamples ``resampled[mode][planner] (B,)``."""
  sa = [table[a][n]['score'] for n in names]
  sb = [table[b][n]['score'] for n in names]
  if len(names) < 2:
    nan = (float('nan'), float('nan'))
    return {'modes': (a, b), 'spearman': float('nan'), 'kendall': float('nan'),
            'spearman_ci': nan, 'kendall_ci': nan}
  ra = np.stack([resampled[a][n] for n in names])  # (planners, B)
  rb = np.stack([resampled[b][n] for n in names])
  rho = [planner_metrics.spearman(ra[:, k], rb[:, k]) for k in range(ra.shape[1])]
  tau = [planner_metrics.kendall_tau(ra[:, k], rb[:, k]) for k in range(ra.shape[1])]
  return {'modes': (a, b), 'spearman': planner_metrics.spearman(sa, sb),
          'kendall': planner_metrics.kendall_tau(sa, sb),
          'spearman_ci': bootstrap.percentile_interval(rho, level),
          'kendall_ci': bootstrap.percentile_interval(tau, level)}


def summarise(scores: EpisodeScores) -> dict[str, float]:
  """Means over valid episodes (module doc's columns)."""
  valid = np.asarray(scores.valid).reshape(-1)
  count = int(valid.sum())
  mean = lambda a: float(a.reshape(-1)[valid].mean()) if count else float('nan')
  row = {c: mean(v) for c, v in _episode_values(scores).items()}
  fp = np.asarray(scores.false_positive_count).reshape(-1)[valid]
  row.update(false_positive_collisions=float(fp.sum()), episodes=float(count))
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
                      rollouts: int = 1, deterministic_modes: Sequence[str] = (),
                      bootstrap_resamples: int = 1000, interval_level: float = 0.95,
                      jit_options: Mapping[str, Any] | None = None) -> PlannerStudy:
  """Scores every planner under every sim-agent mode (module doc).

  Args:
    planners: name -> ``(EgoPlanner, params)``, or planners with distinct ``name``s
      (params None). Planners with equal configuration share one compiled rollout, so
      a grid (:func:`spacer_jax.eval.planners.idm_planner_grid`) compiles once per mode.
    sim_agent_modes: name -> ``(SimAgentPolicy, params)`` driving the other objects.
    scenarios: ``SimulatorState`` with batch shape ``(S,)`` (reset by the runner).
    rng: PRNG key; rollout ``r`` of mode ``i`` uses ``fold_in(fold_in(rng, i), r)`` for
      every planner (common random numbers).
    env: the environment (it must control the SDC for the planner to drive it).
    vocab: gives the decision step ``S``; planners with a ``steps_per_decision`` must
      match it.
    num_steps: decision steps per episode.
    config: the score's thresholds and weights.
    progress_reference: ``'best'`` or ``'log'`` (:func:`reference_progress`).
    rollouts: rollouts per scene of every stochastic mode.
    deterministic_modes: modes rolled out once whatever ``rollouts`` says (log replay).
    bootstrap_resamples: scene-level bootstrap resamples of every interval.
    interval_level: the intervals' coverage.
    jit_options: compiler options of the rollouts and the scorer (e.g. a low
      ``xla_backend_optimization_level`` in tests).

  Returns:
    :class:`PlannerStudy`.
  """
  planners = _entries(planners, 'planners')
  modes = _entries(sim_agent_modes, 'sim_agent_modes')
  if len(scenarios.shape) != 1:
    raise ValueError(f'run_planner_study expects scenarios with one batch axis (scenes), '
                     f'got batch shape {scenarios.shape}.')
  if rollouts < 1 or bootstrap_resamples < 1:
    raise ValueError(f'run_planner_study needs rollouts >= 1 and bootstrap_resamples >= 1, '
                     f'got {rollouts} and {bootstrap_resamples}.')
  unknown = set(deterministic_modes) - set(modes)
  if unknown:
    raise ValueError(f'deterministic_modes names modes that are not given: {sorted(unknown)}; '
                     f'modes: {list(modes)}.')
  if progress_reference not in ('best', 'log'):
    raise ValueError(f"progress_reference must be 'best' or 'log', got {progress_reference!r}.")
  for name, (planner, _) in planners.items():
    steps = getattr(planner, 'steps_per_decision', vocab.steps_per_token)
    if steps != vocab.steps_per_token:
      raise ValueError(f'planner {name!r} plans {steps} simulator steps per decision, the '
                       f'vocabulary has {vocab.steps_per_token}.')
  start = env.config.init_steps - 1
  end = start + num_steps * vocab.steps_per_token
  score = planner_metrics.episode_scorer(start, end, config, jit_options)
  draws = bootstrap.scene_resamples(scenarios.shape[0], bootstrap_resamples)

  table, rankings, episodes, intervals, resampled, counts = {}, {}, {}, {}, {}, {}
  for i, (mode, (policy, policy_params)) in enumerate(modes.items()):
    counts[mode] = 1 if mode in deterministic_modes else rollouts
    raw = {}
    for name, (planner, params) in planners.items():
      rollout = planner_rollout_fn(policy, planner, env=env, vocab=vocab,
                                   num_steps=num_steps, jit_options=jit_options)
      per_rollout = []
      for r in range(counts[mode]):
        key = jax.random.fold_in(jax.random.fold_in(rng, i), r)
        state = rollout(policy_params, scenarios, key, params).final_state
        offroad = _offroad_flags(state, start + 1, end, config.drivable_tolerance)
        per_rollout.append(score(state, offroad))
      raw[name] = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *per_rollout)  # (R, S)
    reference = reference_progress(raw, progress_reference)
    final = {n: s.with_reference_progress(reference, config) for n, s in raw.items()}
    table[mode] = {n: summarise(s) for n, s in final.items()}
    rankings[mode] = rank_planners(table[mode])
    episodes[mode] = {n: {f.name: np.asarray(getattr(s, f.name)).reshape(-1).tolist()
                          for f in dataclasses.fields(s)} for n, s in final.items()}
    intervals[mode], resampled[mode] = {}, {}
    for n, s in final.items():
      intervals[mode][n], resampled[mode][n] = _intervals(
          jax.tree_util.tree_map(np.asarray, s), draws, interval_level)

  names = list(planners)
  correlations = [_correlation(a, b, names, table, resampled, interval_level)
                  for a, b in itertools.combinations(modes, 2)]
  return PlannerStudy(planners=names, modes=list(modes), table=table, rankings=rankings,
                      correlations=correlations, episodes=episodes, intervals=intervals,
                      rollouts=counts, level=interval_level)


__all__ = ['INTERVAL_COLUMNS', 'RATE_COLUMNS', 'SCORE_COLUMNS', 'PlannerStudy',
           'planner_rollout_fn', 'rank_planners', 'reference_progress', 'run_planner_study',
           'summarise']
