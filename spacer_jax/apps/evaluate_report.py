"""The evaluation report of ``experiments/evaluate.py``: tables, markdown and plots.

Pure functions of the numbers :mod:`spacer_jax.apps.evaluate` measured (no rollouts):

- :func:`speed_table`: speed / size rows with speed-up and size reduction vs the
  reference; :func:`sample_summary` / :func:`evaluated_agents`: the sample behind the
  numbers, warned about when too small; :func:`count_outliers`: feature values outside
  :data:`PLAUSIBLE_RANGES`.
- :func:`markdown_report`: ``report.md`` (sample, policies' weights, realism / rate /
  speed tables, outliers, planner study).
- :func:`plot_report`: ``plots/`` (metric bars per policy, log vs simulated feature
  histograms of :data:`HISTOGRAM_FEATURES`, planner-score scatter between modes).
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional

import numpy as np

from spacer_jax.eval import realism as realism_lib

# Features plotted as histograms (log vs simulated), with their units; the evaluation
# keeps samples of exactly these (evaluate._feature_samples).
HISTOGRAM_FEATURES = {'linear_speed': 'm/s', 'linear_acceleration': 'm/s^2',
                      'angular_speed': 'rad/s', 'angular_acceleration': 'rad/s^2',
                      'distance_to_nearest_object': 'm', 'distance_to_road_edge': 'm',
                      'time_to_collision': 's'}
# Physically plausible ranges (units of HISTOGRAM_FEATURES): beyond them a value is an
# artefact (a teleport, a heading flip), not driving: 10 m/s^2 is about 1 g, 45 m/s is
# above any highway speed, pi rad/s a half turn per second. The log's own count in the
# report shows how much of that the logged boxes' finite differences already produce.
PLAUSIBLE_RANGES = {'linear_speed': (0.0, 45.0), 'linear_acceleration': (-10.0, 10.0),
                    'angular_speed': (-math.pi, math.pi),
                    'angular_acceleration': (-2 * math.pi, 2 * math.pi)}
# Below these the report warns that its numbers mean little: with fewer scenes policy
# differences of a few hundredths are scene-to-scene noise, with fewer rollouts the
# per-agent likelihood histograms are too coarse, with a shorter horizon the late drift
# of a policy is never scored.
MIN_SCENES = 16
MIN_ROLLOUTS = 8
WOSAC_ROLLOUTS = 32
FULL_SIM_STEPS = 80  # WOSAC's 8 s future at 10 Hz.
_TYPES = tuple(realism_lib.AGENT_TYPES)


# --------------------------------------------------------------------------- tables
def speed_table(speeds: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
  """Rows of the speed / size table. When a reference was evaluated every row carries
  its ratios to the first one: ``speedup_vs_reference`` (scenarios/s over the
  reference's, 1.0 for it) and ``size_reduction_vs_reference`` (the reference's
  parameters over the row's; None for the parameter-free scripted baselines)."""
  ref = next((v for k, v in speeds.items() if k.startswith('reference')), None)
  rows = []
  for label, s in speeds.items():
    row = {'policy': label, **s}
    if ref is not None:
      row['speedup_vs_reference'] = s['scenarios_per_s'] / ref['scenarios_per_s']
      row['size_reduction_vs_reference'] = (ref['num_params'] / s['num_params']
                                            if s['num_params'] else None)
    rows.append(row)
  return rows


def sample_summary(num_scenes: int, num_rollouts: int, decision_steps: int,
                   simulated_steps: int, evaluated: Optional[dict[str, int]] = None
                   ) -> dict[str, Any]:
  """The sample behind the report's numbers, with one warning per quantity too small.

  Args:
    num_scenes: evaluated scenes.
    num_rollouts: rollouts per scene.
    decision_steps: policy decisions per rollout (``realism.num_steps``).
    simulated_steps: scored 0.1 s simulator steps per rollout (decisions x steps per
      token, at most the log's future).
    evaluated: evaluated agents per type (and ``'total'``), summed over the scenes.
  """
  warnings = []
  if num_scenes < MIN_SCENES:
    warnings.append(f'{num_scenes} scenes (< {MIN_SCENES}): differences between policies '
                    'are mostly scene-to-scene noise; evaluate at least '
                    f'{MIN_SCENES}, better 64 or more (data.num_scenarios).')
  if num_rollouts < MIN_ROLLOUTS:
    warnings.append(f'{num_rollouts} rollouts per scene (< {MIN_ROLLOUTS}): the per-agent '
                    f'likelihood histograms are too coarse; WOSAC uses {WOSAC_ROLLOUTS} '
                    '(realism.num_rollouts).')
  if simulated_steps < FULL_SIM_STEPS:
    warnings.append(f'{simulated_steps} simulated steps ({simulated_steps / 10:.1f} s '
                    f'< 8 s): late-horizon drift is not scored; WOSAC scores '
                    f'{FULL_SIM_STEPS} (realism.num_steps x steps per token).')
  return {'num_scenes': num_scenes, 'rollouts_per_scene': num_rollouts,
          'decision_steps': decision_steps, 'simulated_steps': simulated_steps,
          'simulated_seconds': simulated_steps / 10, 'evaluated_agents': dict(evaluated or {}),
          'warnings': warnings}


def evaluated_agents(realism: dict[str, dict]) -> dict[str, int]:
  """Evaluated agents per type and in total (the same scenes for every policy: the
  first results that count them), {} when none do (results written before)."""
  for r in realism.values():
    r = r['2025']
    if 'num_evaluated' in r:
      out = {t: int(r[f'num_evaluated_{t}']) for t in _TYPES if f'num_evaluated_{t}' in r}
      return {**out, 'total': int(r['num_evaluated'])}
  return {}


def _limit_text(name: str) -> str:
  """'beyond ±10 m/s^2' / '> 45 m/s': a plausible range in words."""
  lo, hi = PLAUSIBLE_RANGES[name]
  unit = HISTOGRAM_FEATURES[name]
  if lo == -hi:
    return f'beyond ±{hi:.3g} {unit}'
  if lo == 0.0:  # A non-negative feature (speed): only its top is a limit.
    return f'> {hi:.3g} {unit}'
  return f'outside [{lo:.3g}, {hi:.3g}] {unit}'


def count_outliers(histograms: dict[str, dict]) -> dict[str, dict[str, dict[str, int]]]:
  """Values outside :data:`PLAUSIBLE_RANGES` in the histogram samples.

  Args:
    histograms: policy label -> feature -> ``{'log': values, 'sim': values}`` (the log
      is the same for every policy: the first one's is counted).

  Returns:
    ``{'log': {feature: {'count', 'total'}}, label: {...}, ...}``; {} without samples.
  """
  if not histograms:
    return {}
  first = next(iter(histograms.values()))
  sources = {'log': {n: v['log'] for n, v in first.items()}}
  sources.update({label: {n: v['sim'] for n, v in h.items()}
                  for label, h in histograms.items()})
  out = {}
  for who, feats in sources.items():
    out[who] = {}
    for name, (lo, hi) in PLAUSIBLE_RANGES.items():
      if name in feats:
        v = np.asarray(feats[name])
        out[who][name] = {'count': int(np.sum((v < lo) | (v > hi))), 'total': int(v.size)}
  return out


# --------------------------------------------------------------------------- markdown
def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return 'nan' if math.isnan(v) else (f'{v:.4f}' if abs(v) < 100 else f'{v:,.0f}')
  return str(v)


def _ratio(v: Optional[float]) -> str:
  if v is None:
    return 'n/a (no parameters)'
  return f'{v:.2f}x' if abs(v) < 100 else f'{v:,.0f}x'


def _sample_lines(sample: dict[str, Any]) -> list[str]:
  agents = sample['evaluated_agents']
  per_type = ' / '.join(f'{agents[t]} {t}' for t in _TYPES if t in agents)
  counted = (f"; {agents['total']} evaluated agents ({per_type})" if 'total' in agents
             else '')
  lines = ['## Sample', '',
           f"{sample['num_scenes']} scenes x {sample['rollouts_per_scene']} rollouts per "
           f"scene x {sample['simulated_steps']} simulated steps "
           f"({sample['simulated_seconds']:.1f} s, {sample['decision_steps']} decision "
           f'steps){counted}.', '']
  for warning in sample['warnings']:
    lines += [f'> **Warning: small sample**: {warning}', '']
  return lines


def _policy_lines(policies: dict[str, dict[str, Any]]) -> list[str]:
  lines = ['## Policies', '', '| policy | spec | weights | checkpoint step |',
           '|---|---|---|---|']
  for label, p in policies.items():
    step = '-' if p.get('step') is None else str(p['step'])
    lines.append(f"| {label} | `{p['spec']}` | {p.get('source', '-')} | {step} |")
  return lines + ['']


def _outlier_lines(outliers: dict[str, dict[str, dict[str, int]]]) -> list[str]:
  names = [n for n in PLAUSIBLE_RANGES if any(n in row for row in outliers.values())]
  lines = ['## Outliers', '',
           'Values outside physically plausible ranges, counted on the first evaluation '
           'batch (the samples of `plots/feature_histograms.png`, which leaves them out); '
           'the log row is the recorded data\'s own finite-difference noise.', '',
           '| source | ' + ' | '.join(f'{n} {_limit_text(n)}' for n in names) + ' |',
           '|---|' + '---|' * len(names)]
  for who, row in outliers.items():
    cells = []
    for n in names:
      c = row.get(n)
      cells.append('-' if c is None else
                   f"{c['count']} / {c['total']}" + (f" ({c['count'] / c['total']:.2%})"
                                                     if c['total'] else ''))
    lines.append(f'| {who} | ' + ' | '.join(cells) + ' |')
  return lines + ['']


def _speed_lines(speeds: list[dict]) -> list[str]:
  ratios = any('speedup_vs_reference' in row for row in speeds)
  extra = ' speed-up vs reference | size reduction vs reference |' if ratios else ''
  lines = ['## Speed and size (same batch, same device)', '',
           '| policy | parameters | scenarios/s | batch |' + extra,
           '|---|---|---|---|' + ('---|---|' if ratios else '')]
  for row in speeds:
    cells = [row['policy'], f"{int(row['num_params']):,}", f"{row['scenarios_per_s']:.3f}",
             str(int(row['batch_size']))]
    if ratios:
      cells += [_ratio(row['speedup_vs_reference']),
                _ratio(row['size_reduction_vs_reference'])]
    lines.append('| ' + ' | '.join(cells) + ' |')
  if not ratios:
    lines += ['', 'No reference policy was evaluated, so there is no speed-up or size '
              'reduction to report (add `reference:default` to `baselines`).']
  return lines + ['']


def markdown_report(realism: dict[str, dict], speeds: list[dict], study: Optional[dict],
                    header: str, sample: Optional[dict] = None,
                    policies: Optional[dict[str, dict]] = None,
                    outliers: Optional[dict] = None) -> str:
  """report.md: ``header``, the sample (with its warnings, :func:`sample_summary`), the
  policies' weights, the realism / rate / speed tables, outliers, the planner study.

  Args:
    realism: label -> WOSAC version -> metric.
    speeds: :func:`speed_table` rows.
    study: the planner study's dict (with its ``'markdown'``), or None.
    header: the title lines.
    sample: :func:`sample_summary`.
    policies: label -> ``{'spec', 'source', 'step'}``.
    outliers: :func:`count_outliers`.
  """
  cols = ['meta_metric', 'kinematic', 'interactive', 'map_based', 'min_ade',
          'collision_rate', 'offroad_rate', 'traffic_light_violation_rate']
  lines = [header, '']
  if sample is not None:
    lines += _sample_lines(sample)
  if policies:
    lines += _policy_lines(policies)
  lines += ['Legend: `meta_metric`, `kinematic`, `interactive`, `map_based` and the feature '
            'likelihoods are WOSAC likelihood scores in [0, 1], higher is better (log replay '
            'is the ceiling); `min_ade` is the minimum over rollouts of the mean distance to '
            'the log, metres, lower is better; `*_rate` columns are fractions of (rollout, '
            'evaluated agent) pairs with at least one event in 8 s, lower is better.', '']
  for version in ('2025', '2024'):
    lines += [f'## Realism (WOSAC {version} config)', '',
              '| policy | ' + ' | '.join(cols) + ' |', '|---|' + '---|' * len(cols)]
    for label, r in realism.items():
      lines.append(f'| {label} | ' + ' | '.join(_fmt(r[version][c]) for c in cols) + ' |')
    lines.append('')
  feats = list(realism_lib.FEATURE_NAMES)
  lines += ['## Feature likelihoods (2025)', '', '| policy | ' + ' | '.join(feats) + ' |',
            '|---|' + '---|' * len(feats)]
  for label, r in realism.items():
    lines.append(f'| {label} | ' + ' | '.join(_fmt(r['2025'][f]) for f in feats) + ' |')
  lines += ['', '## Rates per agent type', '',
            'Fractions of (rollout, evaluated agent) pairs with a collision / off-road '
            'event, per type (mean over the scenes holding that type); "excl. log" leaves '
            'out the agents already off road in the log (at the current step or a logged '
            'future step), counted in "log off-road".', '',
            '| policy | ' + ' | '.join(f'collision {t}' for t in _TYPES) + ' | '
            + ' | '.join(f'off-road {t}' for t in _TYPES)
            + ' | off-road excl. log | log off-road | evaluated (' + ' / '.join(_TYPES)
            + ') |', '|---|' + '---|' * (2 * len(_TYPES) + 3)]
  nan = math.nan
  for label, r in realism.items():
    r = r['2025']  # Rates do not depend on the config version.
    # Results files written before these counts existed lack them.
    count = lambda name, r=r: str(int(r[name])) if name in r else '-'
    cells = ([_fmt(r.get(f'collision_rate_{t}', nan)) for t in _TYPES]
             + [_fmt(r.get(f'offroad_rate_{t}', nan)) for t in _TYPES]
             + [_fmt(r.get('offroad_rate_excl_log_offroad', nan)), count('num_log_offroad'),
                ' / '.join(count(f'num_evaluated_{t}') for t in _TYPES)])
    lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
  lines += ['']
  lines += _speed_lines(speeds)
  if outliers:
    lines += _outlier_lines(outliers)
  if study is not None:
    lines += ['## Closed-loop planner study', '', study['markdown']]
  lines += ['Plots: `plots/`; videos: `videos/`; raw numbers: `report.json`.', '']
  return '\n'.join(lines)


# --------------------------------------------------------------------------- plots
def _pyplot():
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


def realism_bars_figure(realism: dict[str, dict]) -> Any:
  """Grouped bars of the meta-metric and bucket likelihoods (WOSAC 2025) per policy."""
  plt = _pyplot()
  labels = list(realism)
  metrics = ['meta_metric', 'kinematic', 'interactive', 'map_based']
  fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(labels), 3.5))
  width = 0.8 / len(metrics)
  for i, m in enumerate(metrics):
    ax.bar(np.arange(len(labels)) + i * width, [realism[k]['2025'][m] for k in labels],
           width, label=m)
  ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=20)
  ax.set_xlabel('policy')
  ax.set_ylabel('WOSAC 2025 likelihood (0-1)')
  ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def feature_histograms_figure(histograms: dict[str, dict],
                              outliers: Optional[dict] = None) -> Any:
  """Log vs simulated densities of :data:`HISTOGRAM_FEATURES`, one panel each.

  The bins span the 1st-99th percentile of the samples inside
  :data:`PLAUSIBLE_RANGES`, so outliers are never drawn: each bounded panel says how
  many values per source it leaves out (``outliers``, default :func:`count_outliers`).
  """
  plt = _pyplot()
  outliers = count_outliers(histograms) if outliers is None else outliers
  first = next(iter(histograms.values()))
  names = [n for n in HISTOGRAM_FEATURES if n in first]  # Older results lack some.
  ncols = min(4, len(names))
  nrows = -(-len(names) // ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3 * nrows), squeeze=False)
  flat = axes.ravel()
  for ax, name in zip(flat, names):
    unit = HISTOGRAM_FEATURES[name]
    values = [first[name]['log']] + [h[name]['sim'] for h in histograms.values() if name in h]
    pooled = np.concatenate([np.asarray(v, float).ravel() for v in values])
    low, high = PLAUSIBLE_RANGES.get(name, (-math.inf, math.inf))
    pooled = pooled[np.isfinite(pooled) & (pooled >= low) & (pooled <= high)]
    lo, hi = np.percentile(pooled, [1, 99]) if pooled.size > 1 else (0.0, 1.0)
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 40)
    ax.hist(first[name]['log'], bins, density=True, histtype='step', color='k', lw=2,
            label='log')
    for label, h in histograms.items():
      if name in h:
        ax.hist(h[name]['sim'], bins, density=True, histtype='step', label=label)
    ax.set_xlabel(f'{name} ({unit})')
    ax.set_ylabel(f'density (per {unit})')
    if name in PLAUSIBLE_RANGES:
      hidden = {who: row[name]['count'] for who, row in outliers.items()
                if name in row and row[name]['count']}
      text = (f'{sum(hidden.values())} outliers {_limit_text(name)} not shown:\n'
              + '\n'.join(f'{who}: {n}' for who, n in hidden.items()) if hidden
              else f'no outliers {_limit_text(name)}')
      ax.text(0.98, 0.97, text, transform=ax.transAxes, ha='right', va='top', fontsize=6,
              bbox={'facecolor': 'white', 'alpha': 0.7, 'linewidth': 0})
  for ax in flat[len(names):]:
    ax.axis('off')
  if len(flat) > len(names):  # A spare panel holds the legend, off the data.
    flat[len(names)].legend(*flat[0].get_legend_handles_labels(), loc='center')
  else:
    flat[0].legend(fontsize=7, loc='upper left')
  fig.tight_layout()
  return fig


def planner_scores_figure(study: Any) -> Any:
  """Planners' mean scores under each pair of sim-agent modes (y = x: same score), with
  their bootstrap intervals as error bars when the study has them."""
  plt = _pyplot()

  def errors(mode, means):
    intervals = getattr(study, 'intervals', None) or {}
    cis = [intervals.get(mode, {}).get(p, {}).get('score') for p in study.planners]
    if any(ci is None for ci in cis):
      return None
    return np.array([[max(m - lo, 0.0) for m, (lo, _) in zip(means, cis)],
                     [max(hi - m, 0.0) for m, (_, hi) in zip(means, cis)]])

  pairs = [(a, b) for i, a in enumerate(study.modes) for b in study.modes[i + 1:]]
  fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 3.6), squeeze=False)
  for ax, (a, b) in zip(axes[0], pairs):
    xs = [study.table[a][p]['score'] for p in study.planners]
    ys = [study.table[b][p]['score'] for p in study.planners]
    ax.errorbar(xs, ys, xerr=errors(a, xs), yerr=errors(b, ys), fmt='o', ms=3, lw=0.6,
                capsize=1.5)
    for p, x, y in zip(study.planners, xs, ys):
      ax.annotate(p, (x, y), fontsize=6)
    # Equal scores under both sim-agent sets lie on y = x; rank changes show off it.
    lo, hi = min(xs + ys), max(xs + ys)
    ax.plot([lo, hi], [lo, hi], 'k--', lw=0.8, label='y = x')
    ax.legend(fontsize=6)
    ax.set_xlabel(f'planner score vs {a} (0-1)')
    ax.set_ylabel(f'planner score vs {b} (0-1)')
  fig.tight_layout()
  return fig


def plot_report(realism: dict[str, dict], histograms: dict[str, dict], study: Optional[Any],
                out_dir: str, outliers: Optional[dict] = None) -> list[str]:
  """Writes the metric bars, feature histograms (with ``outliers``, default
  :func:`count_outliers`) and planner-score scatter plots into ``out_dir``; their paths."""
  plt = _pyplot()
  os.makedirs(out_dir, exist_ok=True)
  figures = {'realism_bars.png': realism_bars_figure(realism)}
  if histograms:
    figures['feature_histograms.png'] = feature_histograms_figure(histograms, outliers)
  if study is not None and len(study.modes) > 1:
    figures['planner_scores.png'] = planner_scores_figure(study)
  paths = []
  for name, fig in figures.items():
    paths.append(os.path.join(out_dir, name))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
  return paths


__all__ = ['FULL_SIM_STEPS', 'HISTOGRAM_FEATURES', 'MIN_ROLLOUTS', 'MIN_SCENES',
           'PLAUSIBLE_RANGES', 'WOSAC_ROLLOUTS', 'count_outliers', 'evaluated_agents',
           'feature_histograms_figure', 'markdown_report', 'planner_scores_figure',
           'plot_report', 'realism_bars_figure', 'sample_summary', 'speed_table']
