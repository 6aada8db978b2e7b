"""Host code of ``experiments/evaluate.py``: every sim-agent policy, one report.

``run_evaluation(config, workdir, checkpoints)`` evaluates the baselines of
``config.baselines`` (log replay, constant velocity, IDM, the default reference) and the
trained policies named by ``checkpoints`` (``spacer:DIR``, ``ppo:DIR``, ``hr_ppo:DIR``,
``reference:PATH``) on the same held-out scenes and writes into ``workdir``:

- ``results/<policy>.json``: per policy, WOSAC realism under the 2025 and 2024 configs
  (feature likelihoods, buckets, meta-metric, minADE, collision / off-road / red-light
  rates, collision / off-road rates per agent type, the off-road rate without the
  agents already off road in the log and their count) and speed (parameters,
  closed-loop scenarios/s at one batch size). A finished policy is not re-evaluated
  when the command runs again (delete the file to redo it).
- ``planner_study.json``: the closed-loop planner study (IDM grid, Frenet family,
  learned egos) under each sim-agent mode, with rank correlations between modes.
- ``report.md`` / ``report.json``: the tables; ``plots/``: metric bars per policy,
  feature histograms (log vs simulated), planner-score scatter between modes;
  ``videos/``: a few rollouts per policy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from spacer_jax.eval import realism as realism_lib
from spacer_jax.eval.sim_agents import closed_loop_fn, realism_rollouts
from spacer_jax.sim.builders import stack_states
from spacer_jax.sim.datatypes import INIT_STEPS, SimulatorState
from spacer_jax.tokens.vocabulary import TokenVocabulary

LEARNED_KINDS = ('spacer', 'ppo', 'hr_ppo')
# Features plotted as histograms (log vs simulated), with their units.
HISTOGRAM_FEATURES = {'linear_speed': 'm/s', 'linear_acceleration': 'm/s^2',
                      'distance_to_nearest_object': 'm', 'distance_to_road_edge': 'm',
                      'time_to_collision': 's'}
_TYPES = tuple(realism_lib.AGENT_TYPES)


@dataclasses.dataclass
class PolicyEntry:
  """One evaluated policy: its label, spec, policy object, params and vocabulary."""

  label: str
  spec: str
  policy: Any
  params: Any
  vocab: TokenVocabulary
  _run: Any = dataclasses.field(default=None, repr=False)  # Compiled closed loop.

  @property
  def kind(self) -> str:
    return self.spec.partition(':')[0]


# --------------------------------------------------------------------------- inputs
def load_scenarios(config: ml_collections.ConfigDict) -> SimulatorState:
  """The evaluation scenes, batched ``(data.num_scenarios,)``: the trainers' held-out
  generator seeds, or the first records of ``data.files``."""
  n = config.data.num_scenarios
  if not config.data.files:
    from spacer_jax.apps.train_spacer import generator_config
    from spacer_jax.data import generator
    gen = generator_config(config)
    return stack_states([generator.generate_scenario(config.data.eval_seed_offset + i, gen)
                         for i in range(n)])
  from spacer_jax.data import womd
  states = womd.read_scenarios(config.data.files, 0, n, config.data.format,
                               config.data.num_objects, config.data.num_roadgraph_points)
  if len(states) < n:
    raise ValueError(f'data.files {config.data.files!r} holds {len(states)} records, '
                     f'data.num_scenarios={n} asked.')
  return stack_states(states)


def _default_vocab(config: ml_collections.ConfigDict) -> TokenVocabulary:
  from spacer_jax.tokens import get_or_build_default_vocabulary, load_vocabulary
  if config.tokens.vocabulary:
    return load_vocabulary(config.tokens.vocabulary)
  return get_or_build_default_vocabulary(config.tokens.num_tokens,
                                         config.tokens.steps_per_token)


def _label(spec: str, taken: set[str]) -> str:
  kind, _, path = spec.partition(':')
  label = kind
  if path and path != 'default' and kind != 'reference':
    label = f'{kind}_{os.path.basename(os.path.normpath(path))}'
  while label in taken:
    label += '_'
  return label


# Decoding overrides a spec may carry after '@' (``reference:default@top_k=1``).
_DECODING = {'top_k': int, 'temperature': float, 'learned_top_k': int}


def split_decoding(spec: str) -> tuple[str, dict[str, Any]]:
  """``'reference:PATH@top_k=1@temperature=0.8'`` -> ``('reference:PATH', {...})``.

  Raises:
    ValueError: an override that is not ``key=value`` with a known key.
  """
  base, *parts = spec.split('@')
  out: dict[str, Any] = {}
  for part in parts:
    key, eq, value = part.partition('=')
    if not eq or key not in _DECODING:
      raise ValueError(f'policy spec {spec!r}: decoding override {part!r} must be one of '
                       f'{sorted(_DECODING)} as key=value, e.g. {base}@top_k=1')
    try:
      out[key] = _DECODING[key](value)
    except ValueError as e:
      raise ValueError(f'policy spec {spec!r}: {key}={value!r} is not a '
                       f'{_DECODING[key].__name__}') from e
  return base, out


def load_policies(config: ml_collections.ConfigDict, checkpoints: list[str]
                  ) -> list[PolicyEntry]:
  """The baselines then ``checkpoints``, each as a :class:`PolicyEntry`.

  A spec may end in decoding overrides (``reference:default@top_k=1`` for greedy,
  ``@temperature=0.8``, ``spacer:DIR@learned_top_k=5``); its label then carries them.
  """
  from spacer_jax.eval.sim_agent_policies import default_env, load_policy
  env = default_env()
  vocab = _default_vocab(config)
  specs = [s for s in config.baselines.split(',') if s] + list(checkpoints)
  entries, taken = [], set()
  for full_spec in specs:
    spec, decoding = split_decoding(full_spec)
    suffix = ''.join(f'@{k}={v}' for k, v in decoding.items())
    if spec == 'reference:default':
      from spacer_jax.models.default import get_or_train_default_reference
      spec = 'reference:' + get_or_train_default_reference(config.tokens.num_tokens)
      label = 'reference' + suffix
    else:
      label = _label(spec, taken) + suffix
    token_policy = spec.partition(':')[0] != spec
    settings = dict(top_k=config.realism.top_k, temperature=config.realism.temperature,
                    learned_top_k=config.realism.learned_top_k)
    settings.update(decoding)
    policy, params = load_policy(
        spec, env=env, vocab=None if token_policy else vocab,
        max_steps=config.realism.num_steps, **settings)
    taken.add(label)
    entries.append(PolicyEntry(label, spec, policy, params,
                               getattr(policy, 'vocab', None) or vocab))
  return entries


# --------------------------------------------------------------------------- measures
def _batches(n: int, size: int) -> list[slice]:
  return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _take(state: SimulatorState, s: slice | np.ndarray) -> SimulatorState:
  return jax.tree_util.tree_map(lambda a: a[s], state)


def rollout_mesh(config: ml_collections.ConfigDict) -> Optional[Mesh]:
  """The data mesh the realism rollouts are split over (``mesh.num_devices`` of this
  process's devices, 0 = all), or None for a single device."""
  from spacer_jax import parallel
  devices = jax.local_devices()
  count = config.mesh.num_devices or len(devices)
  if count == 1:
    return None
  mesh = parallel.make_mesh(count, devices=devices)
  parallel.check_divisible(mesh, **{'realism.num_rollouts': config.realism.num_rollouts})
  return mesh


def evaluate_realism(entry: PolicyEntry, scenes: SimulatorState,
                     config: ml_collections.ConfigDict, rng: jax.Array,
                     histograms: Optional[dict] = None,
                     mesh: Optional[Mesh] = None) -> dict[str, dict[str, float]]:
  """WOSAC realism of ``entry`` on ``scenes`` under both configs (aggregated means).

  ``histograms``, when given, receives the first batch's features of the log and of
  the rollouts (feature name -> ``{'log': values, 'sim': values}``). With ``mesh`` the
  rollouts of each batch are split over its devices (:func:`rollout_mesh`).
  """
  from spacer_jax.eval.sim_agent_policies import default_env
  env = default_env()
  horizon = config.realism.num_steps * entry.vocab.steps_per_token
  results = {'2025': [], '2024': []}
  n = scenes.shape[0]
  for b, part in enumerate(_batches(n, config.realism.batch_size)):
    # The last batch is padded with its first scene: one compiled shape for all.
    rows = np.arange(part.start, part.start + config.realism.batch_size)
    batch = _take(scenes, np.where(rows < part.stop, rows, part.start))
    rollouts = realism_rollouts(entry.policy, entry.params, batch, jax.random.fold_in(rng, b),
                                config.realism.num_rollouts, env=env, vocab=entry.vocab,
                                num_steps=config.realism.num_steps,
                                jit_options=_jit_options(config), mesh=mesh)
    log_state, rollouts = _to_horizon(batch, rollouts, env.config.init_steps + horizon)
    features = realism_lib.compute_features(log_state, rollouts)
    keep = part.stop - part.start
    for name in results:
      scored = realism_lib.score_features(features, name)
      results[name].append(jax.tree_util.tree_map(lambda a, k=keep: np.asarray(a)[:k],
                                                  scored))
    if histograms is not None and b == 0:
      histograms.update(_feature_samples(features))
  return {name: realism_lib.aggregate(parts).to_dict() for name, parts in results.items()}


def _jit_options(config: ml_collections.ConfigDict) -> Optional[dict]:
  """Compiler options: no backend optimisation with ``fast_compile`` (tests)."""
  return {'xla_backend_optimization_level': 0} if config.fast_compile else None


def _to_horizon(log_state: SimulatorState, rollouts: Any, num_timesteps: int):
  """Cuts the log and the rollouts to the simulated horizon: with fewer decision steps
  than the log has future (short test runs), the unsimulated steps are not scored."""
  if num_timesteps >= log_state.log_trajectory.num_timesteps:
    return log_state, rollouts
  cut = lambda tree, n: jax.tree_util.tree_map(lambda a: a[..., :n], tree)
  log_state = log_state.replace(
      log_trajectory=cut(log_state.log_trajectory, num_timesteps),
      log_traffic_light=cut(log_state.log_traffic_light, num_timesteps))
  return log_state, cut(rollouts, num_timesteps - INIT_STEPS)


def _feature_samples(features: realism_lib.WosacFeatures) -> dict[str, dict[str, np.ndarray]]:
  """Valid feature values of the log (scene 0) and of every rollout (scenes 1..R)."""
  ok = np.asarray(features.eval_ok)[..., None, :, None] & np.asarray(features.log_valid)[
      ..., None, :, :]  # (B, 1, E, T)
  out = {}
  for name in HISTOGRAM_FEATURES:
    v = np.asarray(getattr(features, name))  # (B, S, E, T)
    mask = np.broadcast_to(ok, v.shape) & np.isfinite(v)
    out[name] = {'log': v[:, 0][mask[:, 0]], 'sim': v[:, 1:][mask[:, 1:]]}
  return out


def _closed_loop(entry: PolicyEntry, config: ml_collections.ConfigDict):
  """The entry's compiled closed-loop rollout (one per entry: speed and videos share it)."""
  if entry._run is None:
    from spacer_jax.eval.sim_agent_policies import default_env
    entry._run = closed_loop_fn(entry.policy, env=default_env(), vocab=entry.vocab,
                                num_steps=config.realism.num_steps,
                                jit_options=_jit_options(config))
  return entry._run


def measure_speed(entry: PolicyEntry, scenes: SimulatorState,
                  config: ml_collections.ConfigDict) -> dict[str, float]:
  """Parameters and closed-loop scenarios/s (8 s of every agent) at ``speed.batch_size``
  scenes per call, best of ``speed.repeats`` warm calls."""
  size = min(config.speed.batch_size, scenes.shape[0])
  batch = _take(scenes, slice(0, size))
  run = _closed_loop(entry, config)
  key = jax.random.PRNGKey(0)
  jax.block_until_ready(run(entry.params, batch, key))  # Compile.
  best = math.inf
  for i in range(config.speed.repeats):
    start = time.perf_counter()
    jax.block_until_ready(run(entry.params, batch, jax.random.fold_in(key, i)))
    best = min(best, time.perf_counter() - start)
  return {'num_params': float(entry.policy.num_params(entry.params)),
          'scenarios_per_s': size / best, 'batch_size': float(size),
          'seconds_per_batch': best}


def render_videos(entry: PolicyEntry, scenes: SimulatorState,
                  config: ml_collections.ConfigDict, out_dir: str) -> list[str]:
  """MP4s of the first ``report.num_videos`` scenes driven by ``entry`` (rolled out in
  the speed measurement's batch, so the compiled call is reused)."""
  from spacer_jax.viz import render
  count = min(config.report.num_videos, scenes.shape[0], config.speed.batch_size)
  if not count:
    return []
  batch = _take(scenes, slice(0, min(config.speed.batch_size, scenes.shape[0])))
  result = _closed_loop(entry, config)(entry.params, batch, jax.random.PRNGKey(1))
  start = INIT_STEPS - 1
  end = start + config.realism.num_steps * entry.vocab.steps_per_token + 1
  paths = []
  for i in range(count):
    final = jax.tree_util.tree_map(lambda a, i=i: a[i], result.final_state)
    final = final.replace(road_edge_index=None)
    paths.append(render.save_video(final, os.path.join(out_dir, f'{entry.label}_{i}.mp4'),
                                   start=start, end=end))
  return paths


def planner_study(entries: list[PolicyEntry], scenes: SimulatorState,
                  config: ml_collections.ConfigDict) -> Optional[Any]:
  """Planners (IDM grid, Frenet family, learned egos) x sim-agent modes."""
  from spacer_jax.eval.planner_study import run_planner_study
  from spacer_jax.eval.planners import PolicyEgo, frenet_planner_family, idm_planner_grid
  from spacer_jax.eval.sim_agent_policies import default_env
  learned = [e for e in entries if e.kind in LEARNED_KINDS]
  wanted = [m for m in config.planners.modes.split(',') if m]
  modes = {}
  for mode in wanted:
    if mode == 'learned':
      modes.update({e.label: (e.policy, e.params) for e in learned})
    else:
      match = [e for e in entries if e.label == mode or e.kind == mode]
      if match:
        modes[mode] = (match[0].policy, match[0].params)
  if not modes:
    return None
  vocab = next((e.vocab for e in entries if e.kind in ('reference',) + LEARNED_KINDS),
               entries[0].vocab)
  planners = dict(idm_planner_grid(config.planners.num_idm))
  if config.planners.num_frenet:
    planners.update(frenet_planner_family(config.planners.num_frenet))
  if config.planners.learned_egos:
    for e in learned:
      planners[f'ego_{e.label}'] = (PolicyEgo(e.policy), e.params)
  n = min(config.planners.num_scenarios, scenes.shape[0])
  return run_planner_study(planners, modes, _take(scenes, slice(0, n)),
                           jax.random.PRNGKey(config.seed + 11), env=default_env(),
                           vocab=vocab, num_steps=config.realism.num_steps,
                           jit_options=_jit_options(config))


# --------------------------------------------------------------------------- report
def speed_table(speeds: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
  """Rows of the speed / size table, with each learned policy's ratios to the first
  reference (speed-up and size reduction)."""
  ref = next((v for k, v in speeds.items() if k.startswith('reference')), None)
  rows = []
  for label, s in speeds.items():
    row = {'policy': label, **s}
    if ref is not None and label.partition('_')[0] in LEARNED_KINDS + ('spacer',):
      row['speedup_vs_reference'] = s['scenarios_per_s'] / ref['scenarios_per_s']
      row['size_reduction_vs_reference'] = (ref['num_params'] / s['num_params']
                                            if s['num_params'] else math.inf)
    rows.append(row)
  return rows


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return 'nan' if math.isnan(v) else (f'{v:.4f}' if abs(v) < 100 else f'{v:,.0f}')
  return str(v)


def markdown_report(realism: dict[str, dict], speeds: list[dict], study: Optional[dict],
                    header: str) -> str:
  cols = ['meta_metric', 'kinematic', 'interactive', 'map_based', 'min_ade',
          'collision_rate', 'offroad_rate', 'traffic_light_violation_rate']
  lines = [header, '',
           'Legend: `meta_metric`, `kinematic`, `interactive`, `map_based` and the feature '
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
  lines += ['', '## Speed and size (same batch, same device)', '',
            '| policy | parameters | scenarios/s | batch | speed-up vs reference | '
            'size reduction vs reference |', '|---|---|---|---|---|---|']
  for row in speeds:
    lines.append(f"| {row['policy']} | {int(row['num_params']):,} | "
                 f"{row['scenarios_per_s']:.3f} | {int(row['batch_size'])} | "
                 f"{_fmt(row.get('speedup_vs_reference', '-'))} | "
                 f"{_fmt(row.get('size_reduction_vs_reference', '-'))} |")
  lines.append('')
  if study is not None:
    lines += ['## Closed-loop planner study', '', study['markdown']]
  lines += ['Plots: `plots/`; videos: `videos/`; raw numbers: `report.json`.', '']
  return '\n'.join(lines)


def plot_report(realism: dict[str, dict], histograms: dict[str, dict], study: Optional[Any],
                out_dir: str) -> list[str]:
  """Metric bars per policy, feature histograms and planner-score scatter plots."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  labels = list(realism)
  metrics = ['meta_metric', 'kinematic', 'interactive', 'map_based']
  fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(labels), 3.5))
  width = 0.8 / len(metrics)
  for i, m in enumerate(metrics):
    ax.bar(np.arange(len(labels)) + i * width, [realism[k]['2025'][m] for k in labels],
           width, label=m)
  ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=20)
  ax.set_ylabel('likelihood (WOSAC 2025)')
  ax.legend(fontsize=7)
  fig.tight_layout()
  paths.append(os.path.join(out_dir, 'realism_bars.png'))
  fig.savefig(paths[-1], dpi=120)
  plt.close(fig)

  if histograms:
    fig, axes = plt.subplots(1, len(HISTOGRAM_FEATURES), figsize=(4 * len(HISTOGRAM_FEATURES), 3))
    for ax, (name, unit) in zip(axes, HISTOGRAM_FEATURES.items()):
      first = next(iter(histograms.values()))[name]['log']
      values = [first] + [h[name]['sim'] for h in histograms.values()]
      finite = np.concatenate([v for v in values if v.size]) if any(
          v.size for v in values) else np.zeros(1)
      lo, hi = np.percentile(finite, [1, 99]) if finite.size > 1 else (0.0, 1.0)
      bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 40)
      ax.hist(first, bins, density=True, histtype='step', color='k', lw=2, label='log')
      for label, h in histograms.items():
        ax.hist(h[name]['sim'], bins, density=True, histtype='step', label=label)
      ax.set_xlabel(f'{name} ({unit})')
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, 'feature_histograms.png'))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

  if study is not None and len(study.modes) > 1:
    pairs = [(a, b) for i, a in enumerate(study.modes) for b in study.modes[i + 1:]]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 3.6), squeeze=False)
    for ax, (a, b) in zip(axes[0], pairs):
      xs = [study.table[a][p]['score'] for p in study.planners]
      ys = [study.table[b][p]['score'] for p in study.planners]
      ax.scatter(xs, ys)
      for p, x, y in zip(study.planners, xs, ys):
        ax.annotate(p, (x, y), fontsize=6)
      # Equal scores under both sim-agent sets lie on y = x; rank changes show off it.
      lo, hi = min(xs + ys), max(xs + ys)
      ax.plot([lo, hi], [lo, hi], 'k--', lw=0.8, label='y = x')
      ax.legend(fontsize=6)
      ax.set_xlabel(f'planner score vs {a}')
      ax.set_ylabel(f'planner score vs {b}')
    fig.tight_layout()
    paths.append(os.path.join(out_dir, 'planner_scores.png'))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
  return paths


def _write_json(path: str, obj: Any) -> None:
  """Atomic JSON write (NaN / inf as null)."""
  def clean(v):
    if isinstance(v, dict):
      return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
      return [clean(x) for x in v]
    if isinstance(v, (float, np.floating)):
      return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.integer):
      return int(v)
    return v
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(clean(obj), f, indent=2)
  os.replace(tmp, path)


# --------------------------------------------------------------------------- main
def run_evaluation(config: ml_collections.ConfigDict, workdir: str,
                   checkpoints: list[str]) -> dict[str, Any]:
  """Evaluates every policy and writes the report (module docstring); returns its dict."""
  os.makedirs(os.path.join(workdir, 'results'), exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  t0 = time.perf_counter()
  scenes = load_scenarios(config)
  entries = load_policies(config, checkpoints)
  print(f'evaluating {[e.label for e in entries]} on {scenes.shape[0]} scenes x '
        f'{config.realism.num_rollouts} rollouts x {config.realism.num_steps} steps',
        flush=True)
  realism, speeds, histograms = {}, {}, {}
  rng = jax.random.PRNGKey(config.seed)
  mesh = rollout_mesh(config)
  for entry in tqdm(entries, desc='policies', unit='policy'):
    path = os.path.join(workdir, 'results', f'{entry.label}.json')
    hist = {}
    if os.path.exists(path):
      with open(path) as f:
        done = json.load(f)
    else:
      start = time.perf_counter()
      done = {'spec': entry.spec,
              'realism': evaluate_realism(entry, scenes, config, rng, hist, mesh),
              'speed': measure_speed(entry, scenes, config)}
      done['seconds'] = time.perf_counter() - start
      render_videos(entry, scenes, config, os.path.join(workdir, 'videos'))
      _write_json(path, done)
      np.savez(os.path.join(workdir, 'results', f'{entry.label}_features.npz'),
               **{f'{k}/{w}': v[w] for k, v in hist.items() for w in ('log', 'sim')})
    feats = os.path.join(workdir, 'results', f'{entry.label}_features.npz')
    if not hist and os.path.exists(feats):
      with np.load(feats) as z:
        for key in z.files:
          name, which = key.split('/')
          hist.setdefault(name, {})[which] = z[key]
    realism[entry.label] = {k: {m: (math.nan if v is None else v) for m, v in r.items()}
                            for k, r in done['realism'].items()}
    speeds[entry.label] = done['speed']
    if hist:
      histograms[entry.label] = hist
    r = realism[entry.label]['2025']
    tqdm.write(f"  {entry.label}: meta {r['meta_metric']:.4f} | minADE {r['min_ade']:.3f} m | "
               f"collision {r['collision_rate']:.3f} | off-road {r['offroad_rate']:.3f} | "
               f"{done['speed']['scenarios_per_s']:.3g} scenarios/s")
    if r.get('invalid_sim_steps'):
      tqdm.write(f"  WARNING {entry.label}: {int(r['invalid_sim_steps'])} rollout steps drop "
                 'an agent valid at the current step (WOSAC simulates all of them).')

  study = None
  study_path = os.path.join(workdir, 'planner_study.json')
  if config.planners.enabled:
    study = planner_study(entries, scenes, config)
    if study is not None:
      _write_json(study_path, {**study.to_dict(), 'markdown': study.to_markdown()})
  speed_rows = speed_table(speeds)
  plots = plot_report(realism, histograms, study, os.path.join(workdir, 'plots'))
  study_dict = None if study is None else {**study.to_dict(), 'markdown': study.to_markdown()}
  header = (f'# spacer_jax evaluation\n\n{scenes.shape[0]} scenes '
            f"({'files ' + config.data.files if config.data.files else 'generated, held out'})"
            f', {config.realism.num_rollouts} rollouts of {config.realism.num_steps} decision '
            f'steps each; {jax.devices()[0].platform} backend; '
            f'{time.perf_counter() - t0:.0f} s.')
  with open(os.path.join(workdir, 'report.md'), 'w') as f:
    f.write(markdown_report(realism, speed_rows, study_dict, header))
  report = {'realism': realism, 'speed': speed_rows, 'planner_study': study_dict,
            'plots': plots, 'policies': {e.label: e.spec for e in entries}}
  _write_json(os.path.join(workdir, 'report.json'), report)
  print(f'report: {os.path.join(workdir, "report.md")}', flush=True)
  return report


__all__ = ['PolicyEntry', 'evaluate_realism', 'load_policies', 'load_scenarios',
           'markdown_report', 'measure_speed', 'planner_study', 'run_evaluation',
           'speed_table']
