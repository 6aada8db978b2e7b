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
- ``report.md`` / ``report.json``: the sample (scenes, rollouts, simulated steps,
  evaluated agents; warned about when too small to mean much), each policy's weights
  and checkpoint step, the tables (speed-up and size reduction vs the reference), the
  physically implausible values per policy; ``plots/``: metric bars per policy, feature
  histograms (log vs simulated, outliers counted on the axes), planner-score scatter
  between modes (all written by :mod:`spacer_jax.apps.evaluate_report`); ``videos/``: a
  few rollouts per policy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from spacer_jax.apps import evaluate_report as report_lib
from spacer_jax.eval import realism as realism_lib
from spacer_jax.eval.policy_realism import score_policy, take_scenes
from spacer_jax.eval.sim_agents import closed_loop_fn
from spacer_jax.sim.builders import stack_states
from spacer_jax.sim.datatypes import INIT_STEPS, SimulatorState
from spacer_jax.tokens.vocabulary import TokenVocabulary
from spacer_jax.training.runs import write_json_atomic


@dataclasses.dataclass
class PolicyEntry:
  """One evaluated policy: its label, spec, policy object, params and vocabulary.

  ``source`` says where the weights came from (a checkpoint path, the packaged default
  reference, or 'no weights' for the scripted baselines); ``step`` is the checkpoint's
  training step (None when unknown or without weights).
  """

  label: str
  spec: str
  policy: Any
  params: Any
  vocab: TokenVocabulary
  source: str = 'no weights'
  step: Optional[int] = None
  # The decoding it was loaded with (top_k, temperature, learned_top_k): with the spec,
  # what decides whether a finished result in the workdir is this policy's.
  decoding: Optional[dict[str, Any]] = None
  # A row the configuration added (a learned checkpoint scored greedy as well): it
  # takes part in the realism and speed tables, not in the planner study.
  extra: bool = False
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
  from spacer_jax.models.default_vocabulary import get_or_build_default_vocabulary
  from spacer_jax.tokens import load_vocabulary
  if config.tokens.vocabulary:
    return load_vocabulary(config.tokens.vocabulary)
  return get_or_build_default_vocabulary(config.tokens.num_tokens,
                                         config.tokens.steps_per_token)


def _label(spec: str, taken: set[str], suffix: str = '') -> str:
  """A report label for ``spec`` not in ``taken``, ending in ``suffix``: the kind alone
  for the first reference and for ``KIND:default``, else the kind and the run's folder
  (``spacer_run1``; ``reference_ref_catk`` for ``.../ref_catk/export``); ``_2``, ``_3``
  ... keep it unique."""
  kind, _, path = spec.partition(':')
  label = kind
  named = kind not in ('reference',) and path != 'default'
  if path and (named or kind + suffix in taken):
    folder = os.path.normpath(path)
    if os.path.basename(folder) == 'export':  # A train_reference workdir's export.
      folder = os.path.dirname(folder)
    label = f'{kind}_{os.path.basename(folder)}'
  label += suffix
  unique, n = label, 2
  while unique in taken:
    unique, n = f'{label}_{n}', n + 1
  return unique


def _per_type(cast: Callable[[str], Any]) -> Callable[[str], Any]:
  """Parses one value, or three separated by '/' (vehicle/pedestrian/cyclist)."""
  def parse(value: str) -> Any:
    parts = value.split('/')
    if len(parts) not in (1, 3):
      raise ValueError(value)
    return cast(parts[0]) if len(parts) == 1 else tuple(cast(p) for p in parts)
  parse.kind = {int: 'an int', float: 'a float'}[cast] + ' or three joined by "/"'
  return parse


# Decoding overrides a spec may carry after '@' (``reference:default@top_k=1``;
# ``@top_k=32/8/16`` per agent type: vehicle/pedestrian/cyclist; ``@feasible=0``
# decodes the reference without the speed-change bound).
_DECODING = {'top_k': _per_type(int), 'temperature': _per_type(float),
             'learned_top_k': int, 'feasible': lambda v: bool(int(v))}


def _format_setting(value: Any) -> str:
  return '/'.join(map(str, value)) if isinstance(value, tuple) else str(value)


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
      kind = getattr(_DECODING[key], 'kind', None) or {int: 'an int'}.get(
          _DECODING[key], '0 or 1')
      raise ValueError(f'policy spec {spec!r}: {key}={value!r} is not {kind}') from e
  return base, out


def load_policies(config: ml_collections.ConfigDict, checkpoints: list[str]
                  ) -> list[PolicyEntry]:
  """The baselines then ``checkpoints``, each as a :class:`PolicyEntry`.

  A spec may end in decoding overrides (``reference:default@top_k=1`` for greedy,
  ``@temperature=0.8``, ``spacer:DIR@learned_top_k=5``); its label then carries them.
  With ``realism.learned_greedy_too`` a learned spec without its own ``learned_top_k``
  also gets a greedy row (``SPEC@learned_top_k=1``, ``extra``).
  """
  from spacer_jax.eval.sim_agent_policies import default_env, load_policy
  env = default_env()
  vocab = _default_vocab(config)
  specs = [s for s in config.baselines.split(',') if s] + list(checkpoints)
  from spacer_jax.eval.sim_agent_policies import LEARNED
  runs = []  # (spec, whether the configuration added it)
  for full_spec in specs:
    runs.append((full_spec, False))
    spec, decoding = split_decoding(full_spec)
    if (config.realism.learned_greedy_too and spec.partition(':')[0] in LEARNED
        and 'learned_top_k' not in decoding and config.realism.learned_top_k != 1):
      runs.append((full_spec + '@learned_top_k=1', True))
  entries, taken = [], set()
  for full_spec, extra in runs:
    spec, decoding = split_decoding(full_spec)
    suffix = ''.join(f'@{k}={_format_setting(v)}' for k, v in decoding.items())
    default = spec == 'reference:default'
    label = _label(spec, taken, suffix)
    if default:
      from spacer_jax.models.default import get_or_train_default_reference
      spec = 'reference:' + get_or_train_default_reference(config.tokens.num_tokens)
    token_policy = spec.partition(':')[0] != spec
    # feasible is always named, so a result stored before the bound existed (decoded
    # without it) is not taken for today's.
    settings = dict(top_k=config.realism.top_k, temperature=config.realism.temperature,
                    learned_top_k=config.realism.learned_top_k, feasible=True)
    settings.update(decoding)
    policy, params = load_policy(
        spec, env=env, vocab=None if token_policy else vocab,
        max_steps=config.realism.num_steps, **settings)
    taken.add(label)
    source, step = weights_origin(spec, default)
    entries.append(PolicyEntry(label, spec, policy, params,
                               getattr(policy, 'vocab', None) or vocab, source, step,
                               decoding=settings, extra=extra))
  return entries


def weights_origin(spec: str, default: bool = False) -> tuple[str, Optional[int]]:
  """``(source, step)`` of a loaded spec's weights (``reference:default`` already
  resolved to its path, flagged by ``default``): 'no weights' for the scripted
  baselines, 'packaged default reference (commit ...)' with ship.json's step (the
  same for ``spacer:default`` and the other packaged policies), else the
  checkpoint path and its newest step (for ``spacer:`` / ``ppo:`` / ``hr_ppo:`` the
  self-play iteration)."""
  kind, _, path = spec.partition(':')
  if not path:
    return 'no weights', None
  from spacer_jax.models import default as default_lib
  from spacer_jax.models.checkpoint import EXPORT_SUBDIR
  from spacer_jax.training import Checkpointer
  if kind != 'reference' and path == 'default':  # spacer:default etc.: packaged.
    from spacer_jax.spacer.pretrained import pretrained_info
    info = pretrained_info(kind) or {}
    commit = str(info.get('commit') or 'unknown')[:10]
    return f'packaged {kind} policy (commit {commit})', info.get('iteration')
  if kind != 'reference':
    return path, Checkpointer(os.path.join(path, 'checkpoints')).latest_step()
  export = os.path.join(path, EXPORT_SUBDIR)
  directory = os.path.abspath(export if os.path.isdir(export) else path)
  if directory == os.path.abspath(os.path.join(default_lib.SHIPPED_DIR, EXPORT_SUBDIR)):
    info = default_lib.shipped_reference_info() or {}
    commit = str(info.get('commit') or 'unknown')[:10]
    return f'packaged default reference (commit {commit})', info.get('step')
  # The export's checkpoint is saved at its training step (save_reference).
  step = Checkpointer(directory).latest_step()
  # A cached default: the packaged one did not fit today's recipes, so it was trained.
  return (f'default reference, cached in {path}' if default else path), step


# --------------------------------------------------------------------------- measures
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
  rollouts of each batch are split over its devices (:func:`rollout_mesh`). The
  scoring is ``eval.policy_realism.score_policy``, the same as train_spacer's
  in-training validation.
  """
  from spacer_jax.eval.sim_agent_policies import default_env
  hook = None if histograms is None else (lambda f: histograms.update(_feature_samples(f)))
  scored = score_policy(entry.policy, entry.params, scenes, rng, env=default_env(),
                        vocab=entry.vocab, num_rollouts=config.realism.num_rollouts,
                        num_steps=config.realism.num_steps,
                        batch_size=config.realism.batch_size, configs=('2025', '2024'),
                        jit_options=_jit_options(config), mesh=mesh, on_first_batch=hook)
  return {name: result.to_dict() for name, result in scored.items()}


def _jit_options(config: ml_collections.ConfigDict) -> Optional[dict]:
  """Compiler options: no backend optimisation with ``fast_compile`` (tests)."""
  return {'xla_backend_optimization_level': 0} if config.fast_compile else None


def _feature_samples(features: realism_lib.WosacFeatures) -> dict[str, dict[str, np.ndarray]]:
  """Valid feature values of the log (scene 0) and of every rollout (scenes 1..R)."""
  ok = np.asarray(features.eval_ok)[..., None, :, None] & np.asarray(features.log_valid)[
      ..., None, :, :]  # (B, 1, E, T)
  out = {}
  for name in report_lib.HISTOGRAM_FEATURES:
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
  batch = take_scenes(scenes, slice(0, size))
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
  batch = take_scenes(scenes, slice(0, min(config.speed.batch_size, scenes.shape[0])))
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


# Planner-study mode of the first reference policy made non-reactive (ReferencePolicy
# with reactive=False: it never sees the ego's executed motion).
NON_REACTIVE = 'reference_nonreactive'


def planner_study(entries: list[PolicyEntry], scenes: SimulatorState,
                  config: ml_collections.ConfigDict) -> Optional[Any]:
  """Planners (IDM grid, Frenet family, learned egos) x sim-agent modes."""
  from spacer_jax.eval.planner_study import run_planner_study
  from spacer_jax.eval.planners import PolicyEgo, get_planner_family
  from spacer_jax.eval.sim_agent_policies import LEARNED, SCRIPTED, default_env
  learned = [e for e in entries if e.kind in LEARNED and not e.extra]
  wanted = [m for m in config.planners.modes.split(',') if m]
  modes, deterministic = {}, []
  for mode in wanted:
    if mode == 'learned':
      modes.update({e.label: (e.policy, e.params) for e in learned})
    elif mode == NON_REACTIVE:
      # The paper's non-reactive imitation agents: the reference fed the ego's log.
      match = [e for e in entries if e.kind == 'reference']
      if match:
        modes[mode] = (dataclasses.replace(match[0].policy, reactive=False),
                       match[0].params)
    else:
      match = [e for e in entries if e.label == mode or e.kind == mode]
      if match:
        modes[mode] = (match[0].policy, match[0].params)
        if match[0].kind in SCRIPTED:  # Their rollouts ignore the key: one per scene.
          deterministic.append(mode)
  if not modes:
    return None
  vocab = next((e.vocab for e in entries if e.kind in ('reference',) + LEARNED),
               entries[0].vocab)
  planners = dict(get_planner_family('idm', config.planners.num_idm))
  if config.planners.num_frenet:
    planners.update(get_planner_family('frenet', config.planners.num_frenet))
  if config.planners.learned_egos:
    for e in learned:
      planners[f'ego_{e.label}'] = (PolicyEgo(e.policy), e.params)
  n = min(config.planners.num_scenarios, scenes.shape[0])
  return run_planner_study(planners, modes, take_scenes(scenes, slice(0, n)),
                           jax.random.PRNGKey(config.seed + 11), env=default_env(),
                           vocab=vocab, num_steps=config.realism.num_steps,
                           rollouts=config.planners.rollouts,
                           deterministic_modes=deterministic,
                           bootstrap_resamples=config.planners.bootstrap_resamples,
                           jit_options=_jit_options(config))



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
  write_json_atomic(path, clean(obj))


# --------------------------------------------------------------------------- main
def _above_bar(line: str) -> None:
  """Prints one console line above the active tqdm bar: the bar is cleared, the line
  written and flushed, then the bar redrawn."""
  # tqdm.write does not flush: with stdout piped (``| tee``) it is block-buffered, so the
  # line would come out later, in the middle of the bar's redraws on stderr.
  with tqdm.external_write_mode():
    print(line, flush=True)


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
    done = None
    if os.path.exists(path):
      with open(path) as f:
        done = json.load(f)
      # Kept only for the same policy: a label can name another spec in a later run.
      # (Through JSON: per-type settings are tuples here and lists on disk.)
      stored_as = json.loads(json.dumps(entry.decoding))
      if done.get('spec') != entry.spec or done.get('decoding') != stored_as:
        _above_bar(f'  {entry.label}: results/{entry.label}.json holds {done.get("spec")} '
                   f'{done.get("decoding") or ""}; evaluating {entry.spec} again.')
        done = None
    if done is None:
      start = time.perf_counter()
      done = {'spec': entry.spec, 'decoding': entry.decoding,
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
    _above_bar(f"  {entry.label}: meta {r['meta_metric']:.4f} | minADE {r['min_ade']:.3f} m | "
               f"collision {r['collision_rate']:.3f} | off-road {r['offroad_rate']:.3f} | "
               f"{done['speed']['scenarios_per_s']:.3g} scenarios/s")
    if r.get('invalid_sim_steps'):
      _above_bar(f"  WARNING {entry.label}: {int(r['invalid_sim_steps'])} rollout steps drop "
                 'an agent valid at the current step (WOSAC simulates all of them).')

  study = None
  study_path = os.path.join(workdir, 'planner_study.json')
  if config.planners.enabled:
    study = planner_study(entries, scenes, config)
    if study is not None:
      _write_json(study_path, {**study.to_dict(), 'markdown': study.to_markdown()})
  speed_rows = report_lib.speed_table(speeds)
  outliers = report_lib.count_outliers(histograms)
  plots = report_lib.plot_report(realism, histograms, study, os.path.join(workdir, 'plots'),
                                 outliers)
  study_dict = None if study is None else {**study.to_dict(), 'markdown': study.to_markdown()}
  # Scored steps: the shortest policy horizon, at most the log's future (_to_horizon).
  simulated = min(min(config.realism.num_steps * e.vocab.steps_per_token for e in entries),
                  scenes.log_trajectory.num_timesteps - INIT_STEPS)
  sample = report_lib.sample_summary(scenes.shape[0], config.realism.num_rollouts,
                                     config.realism.num_steps, simulated,
                                     report_lib.evaluated_agents(realism))
  for warning in sample['warnings']:
    print(f'WARNING small sample: {warning}', flush=True)
  policies = {e.label: {'spec': e.spec, 'source': e.source, 'step': e.step} for e in entries}
  header = (f'# spacer_jax evaluation\n\nScenes: '
            f"{'files ' + config.data.files if config.data.files else 'generated, held out'}"
            f'; {jax.devices()[0].platform} backend; {time.perf_counter() - t0:.0f} s.')
  with open(os.path.join(workdir, 'report.md'), 'w') as f:
    f.write(report_lib.markdown_report(realism, speed_rows, study_dict, header, sample,
                                       policies, outliers))
  report = {'sample': sample, 'policies': policies, 'realism': realism, 'speed': speed_rows,
            'outliers': {'limits': report_lib.PLAUSIBLE_RANGES, 'counts': outliers},
            'planner_study': study_dict, 'plots': plots}
  _write_json(os.path.join(workdir, 'report.json'), report)
  print(f'report: {os.path.join(workdir, "report.md")}', flush=True)
  return report


__all__ = ['PolicyEntry', 'evaluate_realism', 'load_policies', 'load_scenarios',
           'measure_speed', 'planner_study', 'run_evaluation', 'weights_origin']
