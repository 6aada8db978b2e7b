"""One prepared accelerator check: four throughput sections at the paper's sizes, one JSON.

  bash benchmarks/gpu_check.sh [--out gpu_check.json]     # on the GPU, < 8 minutes
  bash benchmarks/gpu_check.sh --smoke --out /tmp/gpu_check.json   # tiny sizes, CPU

Sections, each reusing a benchmark of this folder (the JSON key first):

* ``sim``: simulator ``rollout_with_reward`` (``sim_throughput``: 80 steps, 64 objects,
  20000 roadgraph points, bicycle dynamics, reward + overlap / off-road /
  log-divergence metrics) at batch 256, 512, 1024, 2048, 4096, without ``reset`` (the
  road-edge index built outside the timed region) and with it
  (``reset_rollout_with_reward``): scenarios/s (whole 80-step rollouts), scenario-steps/s
  and agent-steps/s (object slots; ``valid_agent_steps_per_s`` counts valid objects).
* ``train``: the SPACER train step (``train_throughput``) at 300 worlds x 64 agents x
  40 policy steps, 20000 roadgraph points, an untrained ``base`` reference, 4 epochs x
  16 minibatches: agent-steps/s (agents that acted) and the shares of rollout /
  reference / update of the step.
* ``reference``: the ``base`` reference's teacher-forced pass (``reference_throughput``)
  at batch 64 and 256 scenes x 64 agents: agent-tokens/s.
* ``realism``: WOSAC 2025 realism (``compute_features`` + ``score_features``) of 64
  scenes x 32 log-replay rollouts (the logged future, gaps held at the last valid pose,
  tiled): scenes/s; the meta-metric is reported as a sanity check (near its ceiling).

Every section, and every row of one, is guarded: an error (e.g. out of memory) is
recorded as a string with its traceback's tail and the next one runs. The JSON
(``--out``) holds the device kind, jax version, git commit, each section's ``status``
('ok' / 'partial' / 'error' / 'skipped' / 'interrupted' / 'running') and ``wall_s``;
it is rewritten after every measurement, so a run stopped by the shell script's timeout
keeps what it had (the section it was in is marked 'interrupted', or stays 'running' if
the stop came inside a compile). Sections run cheapest first (reference,
realism, sim, train): one compile cannot be interrupted, and the train step's is the
largest. Within ``--budget_s`` (default 420 s of the 8-minute limit) rows and programs
are skipped, and marked so, once too little time is left for what follows.
``--smoke`` runs every section at tiny sizes (seconds on a CPU) and writes the same keys
with ``"smoke": true``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import reference_throughput  # noqa: E402
import sim_throughput  # noqa: E402
import train_throughput  # noqa: E402
from timing_utils import best_time, tile_batch  # noqa: E402

from spacer_jax.data.generator import GeneratorConfig, generate_batch  # noqa: E402
from spacer_jax.eval import realism  # noqa: E402
from spacer_jax.models import default as default_reference  # noqa: E402
from spacer_jax.sim.datatypes import INIT_STEPS, Action  # noqa: E402

SECTIONS = ('reference', 'realism', 'sim', 'train')  # run order
# The packaged default vocabulary (200 tokens): no build on a bare machine; speed does
# not depend on the tokens' content.
VOCABULARY = os.path.join(default_reference.SHIPPED_DIR, default_reference.SHIPPED_VOCABULARY)


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Sizes of one run (``FULL`` or ``SMOKE``); scenes are tiled from ``unique_scenes``.

  ``*_min_left`` are fractions of the budget: a row or program is skipped when less
  time than that is left (the train step's later programs also need as much as the
  longest one so far).
  """

  objects: int
  rg_points: int
  sim_batches: tuple[int, ...]
  sim_min_seconds: float  # shortest timed run of one sim row (s)
  train_worlds: int
  train_steps: int  # policy steps (0.2 s) per episode
  train_epochs: int
  train_minibatches: int
  train_reference: str  # reference.size of the untrained reference
  train_variant: str  # spacer_configs.get_config argument
  reference_size: str
  reference_batches: tuple[int, ...]
  realism_scenes: int
  realism_rollouts: int
  repeats: int
  unique_scenes: int = 8
  reference_min_left: float = 0.8
  realism_min_left: float = 0.7
  sim_min_left: float = 0.45
  train_min_left: float = 0.1


FULL = Sizes(objects=64, rg_points=20000, sim_batches=(256, 512, 1024, 2048, 4096),
             sim_min_seconds=0.5, train_worlds=300, train_steps=40, train_epochs=4,
             train_minibatches=16, train_reference='base', train_variant='',
             reference_size='base', reference_batches=(64, 256), realism_scenes=64,
             realism_rollouts=32, repeats=2, unique_scenes=16)
SMOKE = Sizes(objects=8, rg_points=1000, sim_batches=(2, 4), sim_min_seconds=0.05,
              train_worlds=2, train_steps=4, train_epochs=1, train_minibatches=1,
              train_reference='tiny', train_variant='tiny', reference_size='nano',
              reference_batches=(2,), realism_scenes=2, realism_rollouts=2, repeats=1,
              unique_scenes=2)


class Report:
  """The JSON being written: run facts plus ``sections[name]``; rewritten atomically."""

  def __init__(self, path: str, smoke: bool, budget_s: float, sizes: Sizes):
    self.path, self.budget_s, self.start = path, budget_s, time.perf_counter()
    devices = jax.devices()
    self.data: dict[str, Any] = {
        # GIT_COMMIT stands in where the copy being run holds no .git.
        'smoke': smoke, 'git_commit': _git('rev-parse', 'HEAD') or os.environ.get('GIT_COMMIT'),
        'git_dirty': None if (s := _git('status', '--porcelain')) is None else bool(s),
        'jax_version': jax.__version__, 'backend': jax.default_backend(),
        'device_kind': devices[0].device_kind, 'devices': [str(d) for d in devices],
        'started_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds'),
        'budget_s': budget_s, 'sizes': dataclasses.asdict(sizes),
        'compilation_cache_dir': jax.config.jax_compilation_cache_dir,
        'wall_s': None, 'sections': {},
    }

  def remaining(self) -> float:
    """Seconds of the budget left."""
    return self.budget_s - (time.perf_counter() - self.start)

  def write(self) -> None:
    self.data['wall_s'] = time.perf_counter() - self.start
    tmp = f'{self.path}.tmp'
    with open(tmp, 'w') as f:
      json.dump(self.data, f, indent=2, default=float)
    os.replace(tmp, self.path)


def _git(*args: str) -> str | None:
  try:
    out = subprocess.run(['git', *args], cwd=ROOT, capture_output=True, text=True, timeout=20)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def _error(e: BaseException) -> dict[str, str]:
  return {'error': f'{type(e).__name__}: {e}'[:2000],
          'traceback': traceback.format_exc()[-3000:]}


def _guarded(fn: Callable[[], dict], **keys: Any) -> dict:
  """``keys`` plus ``fn()``, or plus the error it raised."""
  try:
    return {**keys, **fn()}
  except Exception as e:  # noqa: BLE001 - recorded, the check goes on
    return {**keys, **_error(e)}


def _skipped(**keys: Any) -> dict:
  return {**keys, 'skipped': 'too little of the time budget left'}


def _scenes(sizes: Sizes, count: int):
  """``count`` generated scenes (``sizes.unique_scenes`` distinct ones tiled)."""
  gen = GeneratorConfig(num_objects=sizes.objects, num_roadgraph_points=sizes.rg_points)
  return tile_batch(generate_batch(range(min(sizes.unique_scenes, count)), gen), count)


# -- sections: each fills its entry (and may write the report between rows) ---------------


def section_sim(sizes: Sizes, report: Report, entry: dict) -> None:
  env = sim_throughput.make_env()
  cases = sim_throughput.build_cases(env)
  steps = sim_throughput.ROLLOUT_STEPS
  entry.update(objects=sizes.objects, rg_points=sizes.rg_points, steps=steps, rows=[])
  for batch in sizes.sim_batches:
    for reset in (False, True):
      keys = dict(batch=batch, reset=reset)
      if report.remaining() < sizes.sim_min_left * report.budget_s:
        entry['rows'].append(_skipped(**keys))
        continue

      def measure(batch=batch, reset=reset):
        raw = _scenes(sizes, batch)
        valid = float(jnp.mean(jnp.sum(raw.object_metadata.is_valid, axis=-1)))
        state = raw if reset else jax.jit(jax.vmap(env.reset))(raw)
        del raw
        action = Action(data=jnp.zeros((batch, sizes.objects, 2), jnp.float32),
                        valid=jnp.ones((batch, sizes.objects, 1), bool))
        case = 'reset_rollout_with_reward' if reset else 'rollout_with_reward'
        seconds, compile_s = sim_throughput.time_case(
            cases[case][0], state, action, steps, sizes.sim_min_seconds, sizes.repeats)
        return dict(case=case, scenarios_per_s=batch / seconds,
                    scenario_steps_per_s=batch * steps / seconds,
                    agent_steps_per_s=batch * steps * sizes.objects / seconds,
                    valid_objects_per_scenario=valid,
                    valid_agent_steps_per_s=batch * steps * valid / seconds,
                    ms_per_call=1e3 * seconds, compile_s=compile_s)

      row = _guarded(measure, **keys)
      entry['rows'].append(row)
      print(f'  sim batch {batch:5d} reset {reset!s:5}: ' + (
          f"{row['agent_steps_per_s']:,.0f} agent-steps/s, "
          f"{row['scenarios_per_s']:,.1f} scenarios/s, compile {row['compile_s']:.1f} s"
          if 'error' not in row else row['error'][:200]), flush=True)
      report.write()


def section_train(sizes: Sizes, report: Report, entry: dict) -> None:
  if report.remaining() < sizes.train_min_left * report.budget_s:  # spare the setup
    entry.update(_skipped(worlds=sizes.train_worlds))
    return
  config = train_throughput.make_config(
      sizes.objects, sizes.rg_points, sizes.train_steps, sizes.train_reference,
      num_tokens=200, vocabulary=VOCABULARY, variant=sizes.train_variant)
  config.obs.max_partners = min(config.obs.max_partners, sizes.objects - 1)
  gate = {'last': None, 'longest': 0.0}

  def should_run(name: str) -> bool:
    now = time.perf_counter()
    if gate['last'] is not None:
      gate['longest'] = max(gate['longest'], now - gate['last'])
    gate['last'] = now
    # The SPACER step (timed first) holds the largest compile of the three.
    need = max(sizes.train_min_left * report.budget_s, gate['longest'])
    print(f'  train: {name} ({report.remaining():.0f} s left, needs {need:.0f})',
          flush=True)
    return report.remaining() > need

  def progress(result: dict) -> None:  # kept if a later program fails or is stopped
    entry.update(result)
    report.write()

  # The headline first; the other two give the shares.
  result = train_throughput.measure(
      config, sizes.train_worlds, sizes.train_epochs, sizes.train_minibatches,
      sizes.repeats, programs=('train_step (spacer)', 'simulation', '+reference'),
      unique_scenes=sizes.unique_scenes, should_run=should_run, progress=progress)
  entry.update(result)
  entry['rows'] = [{'program': k, 'seconds': v, 'agent_steps_per_s': result[
      'agent_steps_per_s'][k]} for k, v in result['seconds'].items()]
  entry['rows'] += [_skipped(program=k) for k in result['skipped_programs']]
  for row in entry['rows']:
    if 'seconds' in row:
      print(f"  train {row['program']}: {row['seconds']:.3f} s, "
            f"{row['agent_steps_per_s']:,.0f} agent-steps/s", flush=True)


def section_reference(sizes: Sizes, report: Report, entry: dict) -> None:
  entry.update(size=sizes.reference_size, agents=sizes.objects, rg_points=sizes.rg_points,
               rows=[])
  for batch in sizes.reference_batches:
    if report.remaining() < sizes.reference_min_left * report.budget_s:
      entry['rows'].append(_skipped(batch=batch))
      continue
    entry['rows'].append(_guarded(lambda batch=batch: reference_throughput.run(
        [sizes.reference_size], [batch], sizes.objects, sizes.rg_points, rollout_steps=0,
        repeats=sizes.repeats)[0], batch=batch))
    report.write()


def log_replay(log, num_rollouts: int):
  """``(R, ..., N, T - 11)`` futures replaying ``log`` (``Trajectory (..., N, T)``):
  every entry after a logged gap holds the last valid one (sim agents are valid at
  step 10, so their futures are always filled), marked valid, tiled ``num_rollouts``
  times."""
  steps = jnp.arange(log.num_timesteps)
  last = jax.lax.cummax(jnp.where(log.valid, steps, 0), axis=log.valid.ndim - 1)
  fill = lambda a: jnp.take_along_axis(a, last, axis=-1)[..., INIT_STEPS:]
  future = jax.tree.map(fill, log).replace(valid=jnp.ones_like(log.valid[..., INIT_STEPS:]))
  return jax.tree.map(lambda a: jnp.broadcast_to(a, (num_rollouts,) + a.shape), future)


def section_realism(sizes: Sizes, report: Report, entry: dict) -> None:
  scenes, rollouts = sizes.realism_scenes, sizes.realism_rollouts
  if report.remaining() < sizes.realism_min_left * report.budget_s:
    entry.update(_skipped(scenes=scenes, rollouts=rollouts))
    return
  state = _scenes(sizes, scenes)
  futures = jax.block_until_ready(log_replay(state.log_trajectory, rollouts))
  options = realism.RealismOptions()
  score = lambda s, r: realism.score_features(realism.compute_features(s, r, options))
  start = time.perf_counter()
  result = jax.block_until_ready(score(state, futures))
  first_s = time.perf_counter() - start
  seconds = best_time(score, state, futures, repeats=sizes.repeats)
  summary = realism.aggregate(result)
  entry.update(scenes=scenes, rollouts=rollouts, objects=sizes.objects,
               rg_points=sizes.rg_points, config='2025',
               rollout_batch_size=options.rollout_batch_size, seconds=seconds,
               first_call_s=first_s, scenes_per_s=scenes / seconds,
               rollouts_per_s=scenes * rollouts / seconds,
               meta_metric=float(summary.meta_metric),
               road_edge_unresolved=int(summary.road_edge_unresolved))
  print(f'  realism {scenes} x {rollouts}: {seconds:.3f} s, {scenes / seconds:,.1f} '
        f'scenes/s (first call {first_s:.1f} s), meta-metric {entry["meta_metric"]:.3f}',
        flush=True)


RUNNERS = {'sim': section_sim, 'train': section_train, 'reference': section_reference,
           'realism': section_realism}


def run_section(name: str, sizes: Sizes, report: Report) -> None:
  entry: dict[str, Any] = {'status': 'running'}
  report.data['sections'][name] = entry
  report.write()
  start = time.perf_counter()
  print(f'[{name}] {report.remaining():.0f} s of the budget left', flush=True)
  try:
    RUNNERS[name](sizes, report, entry)
    rows = entry.get('rows', [])
    bad = [r for r in rows if 'error' in r or 'skipped' in r]
    if 'skipped' in entry or rows and all('skipped' in r for r in rows):
      entry['status'] = 'skipped'
    else:
      entry['status'] = 'partial' if bad else 'ok'

  except Exception as e:  # noqa: BLE001 - recorded, the next section runs
    entry.update(status='error', **_error(e))
    print(f'  {name} failed: {entry["error"][:300]}', flush=True)
  except KeyboardInterrupt:  # the shell script's timeout sends SIGINT
    entry.update(status='interrupted', error='stopped by SIGINT (time limit)')
    entry['wall_s'] = time.perf_counter() - start
    report.write()
    raise
  entry['wall_s'] = time.perf_counter() - start
  jax.clear_caches()  # free compiled programs (and with them device memory) between sections
  gc.collect()
  report.write()


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='gpu_check.json', help='the JSON file written')
  parser.add_argument('--smoke', action='store_true', help='tiny sizes (CPU, seconds)')
  parser.add_argument('--budget_s', type=float, default=None,
                      help='seconds to plan within (default 420; 600 with --smoke)')
  parser.add_argument('--sections', default=','.join(SECTIONS),
                      help=f'comma-separated subset of {SECTIONS}')
  args = parser.parse_args(argv)
  names = [s for s in args.sections.split(',') if s]
  unknown = set(names) - set(SECTIONS)
  if unknown:
    parser.error(f'unknown sections {sorted(unknown)}; choose from {SECTIONS}')
  sizes = SMOKE if args.smoke else FULL
  budget = args.budget_s or (600.0 if args.smoke else 420.0)
  report = Report(args.out, args.smoke, budget, sizes)
  print(f"gpu_check: {report.data['device_kind']} ({report.data['backend']}), jax "
        f"{jax.__version__}, commit {report.data['git_commit']}, budget {budget:.0f} s, "
        f"{'smoke' if args.smoke else 'full'} sizes -> {args.out}", flush=True)
  try:
    for name in SECTIONS:
      if name in names:
        run_section(name, sizes, report)
  except KeyboardInterrupt:
    print(f'gpu_check: interrupted; partial results in {args.out}', flush=True)
    raise SystemExit(130) from None
  report.write()
  print('gpu_check: ' + ', '.join(f"{k} {v['status']} ({v['wall_s']:.0f} s)"
                                  for k, v in report.data['sections'].items())
        + f"; {report.data['wall_s']:.0f} s in all; wrote {args.out}", flush=True)
  return report.data


if __name__ == '__main__':
  main()
