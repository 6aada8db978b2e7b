"""The WOSAC export job: a sim-agent policy's rollouts on WOMD scenarios, as a submission.

``export_wosac(ExportConfig(policy='idm', data='/womd/testing/*', out='idm.binproto'))``
reads every scenario matching ``data`` (WOMD ``Scenario`` protos or ``tf.Example`` s),
rolls out ``num_rollouts`` (32 in WOSAC) joint closed-loop futures of the policy with
:func:`spacer_jax.eval.sim_agents.realism_rollouts` (one decision every 0.2 s, 80 steps
at 10 Hz) and writes one ``SimAgentsChallengeSubmission``
(:mod:`spacer_jax.eval.submission`): per scenario and rollout, x / y / z / heading of
the 80 future steps of every object valid at the current step (WOSAC's sim set).

- No sim agent is dropped: a scenario with more tracks than ``num_objects`` slots is
  decoded with more (the next multiple of 64, so that few shapes compile).
- Scenarios of WOSAC's test split log only the 11 steps up to the current one; they
  are padded with invalid future steps, which the policies never read (log replay then
  extrapolates every object at constant velocity).
- The file is streamed one scenario at a time into ``OUT.tmp-<pid>`` and renamed onto
  ``out`` when complete: an interrupted export leaves no partial submission behind.
- Scenario ``k`` (in the sorted files' record order) gets the rollout key
  ``fold_in(key(seed), k)``, so its rollouts do not depend on ``max_scenarios``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, Optional

import jax
import numpy as np

from spacer_jax.data.womd import records, scenario_proto, tf_example
from spacer_jax.data.womd.assemble import RawScenario, raw_to_state
from spacer_jax.data.womd.dataset import list_files, with_format_hint
from spacer_jax.data.womd.errors import RecordError
from spacer_jax.eval import submission as sub
from spacer_jax.eval.sim_agents import SimAgentPolicy, realism_rollouts
from spacer_jax.sim.config import EnvConfig
from spacer_jax.sim.datatypes import INIT_STEPS, NUM_TIMESTEPS, SimulatorState
from spacer_jax.sim.dynamics import get_dynamics_model
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.tokens.vocabulary import TokenVocabulary

FORMATS = ('scenario', 'tf_example')
FUTURE_STEPS = NUM_TIMESTEPS - INIT_STEPS  # 80 simulated steps at 10 Hz
WOSAC_ROLLOUTS = 32  # joint rollouts per scenario the challenge requires
_SLOT_STEP = 64  # object slots grow in these steps for scenarios with many tracks


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """What to export (the binary's flags).

  Attributes:
    policy: a :func:`spacer_jax.eval.sim_agent_policies.load_policy` spec (``log_replay``,
      ``constant_velocity``, ``idm``, ``reference:PATH``, ``reference:default``,
      ``spacer:DIR``, ...), optionally with decoding overrides (``@top_k=1``).
    data: glob (or comma-separated globs) of WOMD TFRecord files.
    out: the submission file to write (a binary ``SimAgentsChallengeSubmission``).
    format: ``'scenario'`` (WOMD ``scenario/`` protos) or ``'tf_example'``.
    num_rollouts: joint rollouts per scenario (32 for a leaderboard submission).
    max_scenarios: export only the first this many records (None: all).
    seed: rollout seed.
    num_objects: object slots per scenario (more for a scenario with more tracks).
    num_roadgraph_points: roadgraph slots (the map the policies see).
    metadata: the submission-level fields; an empty ``unique_method_name`` becomes the
      policy's name, an empty ``num_model_parameters`` its parameter count.
  """

  policy: str
  data: str
  out: str
  format: str = 'scenario'
  num_rollouts: int = WOSAC_ROLLOUTS
  max_scenarios: Optional[int] = None
  seed: int = 0
  num_objects: int = 128
  num_roadgraph_points: int = 30000
  metadata: sub.SubmissionMetadata = sub.SubmissionMetadata()

  def __post_init__(self):
    # Flag names in the messages: the binary passes these straight through.
    if self.format not in FORMATS:
      raise ValueError(f'--format must be one of {list(FORMATS)}, got {self.format!r}.')
    if not self.policy:
      raise ValueError('--policy is empty; expected a spec such as log_replay, idm or '
                       'reference:default.')
    if not self.out:
      raise ValueError('--out is empty; expected the submission file to write.')
    if self.num_rollouts < 1:
      raise ValueError(f'--num_rollouts must be >= 1, got {self.num_rollouts}.')
    if self.max_scenarios is not None and self.max_scenarios < 1:
      raise ValueError(f'--max_scenarios must be >= 1 (or unset for all), got '
                       f'{self.max_scenarios}.')
    for name in ('num_objects', 'num_roadgraph_points'):
      if getattr(self, name) < 1:
        raise ValueError(f'--{name} must be >= 1, got {getattr(self, name)}.')


@dataclasses.dataclass(frozen=True)
class ExportResult:
  """What :func:`export_wosac` wrote.

  Attributes:
    path: the submission file.
    scenario_ids: the exported scenarios, in file order.
    num_rollouts: joint rollouts per scenario.
    num_bytes: size of the file.
    seconds: wall time of the whole export (loading and compiling included).
  """

  path: str
  scenario_ids: tuple[str, ...]
  num_rollouts: int
  num_bytes: int
  seconds: float


# --------------------------------------------------------------------------- inputs
def _pad_future(raw: RawScenario) -> RawScenario:
  """``raw`` with its trajectories and signals ``(..., T)`` padded with invalid steps
  to 91 (a test-split record has T = 11); longer records are returned unchanged.

  Raises:
    RecordError: fewer steps than the 11 up to the current one.
  """
  steps = raw.trajectory['valid'].shape[-1]
  if steps >= NUM_TIMESTEPS:
    return raw
  if steps < INIT_STEPS:
    raise RecordError(f'has {steps} steps, fewer than the {INIT_STEPS} up to the current '
                      'step', field='timestamps')

  def pad(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # Invalid entries hold -1 (False for validity), the readers' convention.
    return {name: np.concatenate([v, np.full(v.shape[:-1] + (NUM_TIMESTEPS - steps,),
                                             False if v.dtype == bool else -1, v.dtype)],
                                 -1)
            for name, v in values.items()}

  return dataclasses.replace(raw, trajectory=pad(raw.trajectory),
                             traffic_lights=pad(raw.traffic_lights))


def decode_scenario(record: bytes, format: str = 'scenario', num_objects: int = 128,
                    num_roadgraph_points: int = 30000) -> tuple[SimulatorState, str]:
  """One serialized WOMD record -> ``(unbatched state, scenario id)`` for the export.

  Unlike the training readers, never drops an object: the state has ``num_objects``
  slots, or the next multiple of 64 above the record's track count. Records shorter
  than 91 steps (the test split) are padded with invalid future steps.

  Args:
    record: a ``Scenario`` proto or a ``tf.Example`` (``format``).
    format: ``'scenario'`` or ``'tf_example'``.
    num_objects, num_roadgraph_points: slots of the state.

  Returns:
    ``SimulatorState`` with numpy leaves, trajectories ``(slots, 91)``, and the
    record's scenario id ('' when a tf.Example has none).

  Raises:
    RecordError: naming the field at fault (the caller adds file and index).
  """
  if format == 'scenario':
    raw = scenario_proto.scenario_to_raw(scenario_proto.parse_scenario(record))
  elif format == 'tf_example':
    raw = tf_example.example_to_raw(tf_example.parse_example(record))
  else:
    raise ValueError(f'format must be one of {list(FORMATS)}, got {format!r}.')
  raw = _pad_future(raw)
  tracks = len(raw.metadata['ids'])
  slots = num_objects if tracks <= num_objects else -(-tracks // _SLOT_STEP) * _SLOT_STEP
  return raw_to_state(raw, slots, num_roadgraph_points), raw.scenario_id


def _records(files: list[str], limit: Optional[int]
             ) -> tuple[int, Iterator[tuple[str, int, bytes]]]:
  """``(count, iterator of (file, index in file, bytes))`` over the first ``limit``
  records of ``files`` (indexed from their headers, so the count is known up front;
  files beyond the first ``limit`` records are not opened)."""
  indices, total = [], 0
  for path in files:
    if limit is not None and total >= limit:
      break
    indices.append(records.RecordIndex([path]))
    total += len(indices[-1])
  count = total if limit is None else min(limit, total)

  def walk():
    left = count
    for path, index in zip(files, indices):
      for i in range(min(left, len(index))):
        yield path, i, index.read(i)
      left -= min(left, len(index))

  return count, walk()


# --------------------------------------------------------------------------- policy
def export_env() -> MultiAgentEnvironment:
  """Every valid object controlled (WOSAC's sim set), as in evaluation; no metrics and
  no road-edge index, since the export keeps the poses only (neither moves an object)."""
  return MultiAgentEnvironment(get_dynamics_model('delta_global'),
                               EnvConfig(metrics=(), rewards={}, build_road_edge_index=False))


def load_export_policy(spec: str, env: MultiAgentEnvironment
                       ) -> tuple[SimAgentPolicy, Any, TokenVocabulary, int]:
  """``(policy, params, runner vocabulary, decision steps)`` for ``spec``.

  Raises:
    ValueError: a bad spec, or a decision period that does not divide the 80 steps.
    FileNotFoundError: a checkpoint path that does not exist.
  """
  from spacer_jax.apps.evaluate import split_decoding
  from spacer_jax.eval.sim_agent_policies import load_policy
  from spacer_jax.tokens.builder import primitive_vocabulary
  base, decoding = split_decoding(spec)
  policy, params = load_policy(base, env=env, **decoding)
  # Token policies carry their vocabulary; the scripted ones take from the runner's only
  # the decision period S (2 steps), so a small data-free vocabulary serves.
  vocab = getattr(policy, 'vocab', None) or primitive_vocabulary(16)
  s = vocab.steps_per_token
  if FUTURE_STEPS % s:
    raise ValueError(f'--policy {spec!r} decides every {s} steps, which does not divide '
                     f'the {FUTURE_STEPS} future steps WOSAC scores.')
  num_steps = FUTURE_STEPS // s
  if getattr(policy, 'max_steps', num_steps) < num_steps:  # the reference's decode cache
    policy = dataclasses.replace(policy, max_steps=num_steps)
  return policy, params, vocab, num_steps


def _rollout_mesh(num_rollouts: int):
  """A data mesh over this process's devices when they split ``num_rollouts`` evenly
  (a rollout depends only on its key, so the result does not change), else None."""
  from spacer_jax import parallel
  devices = jax.local_devices()
  if len(devices) == 1 or num_rollouts % len(devices):
    return None
  return parallel.make_mesh(len(devices), devices=devices)


# --------------------------------------------------------------------------- export
def _print(line: str) -> None:
  print(line, flush=True)  # progress shows up in a log file as it happens


def export_wosac(config: ExportConfig, log: Callable[[str], Any] = _print,
                 jit_options: Optional[dict] = None) -> ExportResult:
  """Rolls ``config.policy`` out on the scenarios of ``config.data`` and writes the
  submission to ``config.out`` (module docstring); prints a line per scenario.

  Args:
    config: what to export.
    log: receives the progress lines.
    jit_options: compiler options of the rollouts (tests: faster compiles).

  Returns:
    :class:`ExportResult`.

  Raises:
    FileNotFoundError: ``data`` matches no file, or a checkpoint is missing.
    IsADirectoryError: ``out`` is a directory.
    ValueError: a bad spec, a duplicate scenario id, a policy that produced non-finite
      poses; :class:`RecordError` (a ValueError) for a bad record, naming file, index
      and field.
  """
  start = time.perf_counter()
  try:
    files = list_files(config.data)
  except FileNotFoundError:
    raise FileNotFoundError(f'--data {config.data!r} matches no file.') from None
  out = os.path.abspath(config.out)
  if os.path.isdir(out):
    raise IsADirectoryError(f'--out {config.out!r} is a directory; expected a file name.')
  env = export_env()
  policy, params, vocab, num_steps = load_export_policy(config.policy, env)
  metadata = dataclasses.replace(
      config.metadata,
      unique_method_name=config.metadata.unique_method_name or policy.name,
      num_model_parameters=(config.metadata.num_model_parameters
                            or str(policy.num_params(params))))
  count, items = _records(files, config.max_scenarios)
  if not count:
    raise ValueError(f'--data {config.data!r}: the {len(files)} matching file(s) hold no '
                     'records.')
  note = ('' if config.num_rollouts == WOSAC_ROLLOUTS else
          f' (WOSAC requires {WOSAC_ROLLOUTS} for a leaderboard submission)')
  log(f'export_wosac: {config.policy} on {count} scenario(s) from {len(files)} file(s), '
      f'{config.num_rollouts} rollouts{note} -> {config.out}')
  mesh = _rollout_mesh(config.num_rollouts)
  key = jax.random.key(config.seed)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  tmp = f'{out}.tmp-{os.getpid()}'
  seen: dict[str, str] = {}
  try:
    with open(tmp, 'wb') as f:
      for k, (path, index, record) in enumerate(items):
        t0 = time.perf_counter()
        where = f'{path} record {index}'
        try:
          state, scenario_id = decode_scenario(record, config.format, config.num_objects,
                                               config.num_roadgraph_points)
        except RecordError as e:
          # A file of the other format gets a hint to switch formats.
          hinted = with_format_hint(e, record, config.format)
          raise hinted.with_location(path, index) from None
        # The leaderboard needs the real id; a tf.Example without one still gets a
        # unique, traceable name.
        scenario_id = scenario_id or f'{os.path.basename(path)}-{index}'
        if scenario_id in seen:
          raise ValueError(f'scenario id {scenario_id!r} appears twice ({seen[scenario_id]} '
                           f'and {where}); a submission holds each scenario once.')
        seen[scenario_id] = where
        rollouts = realism_rollouts(policy, params, state, jax.random.fold_in(key, k),
                                    config.num_rollouts, env=env, vocab=vocab,
                                    num_steps=num_steps, jit_options=jit_options, mesh=mesh)
        rollouts = jax.tree_util.tree_map(np.asarray, rollouts)
        scene, = sub.rollouts_to_submission(state, rollouts, scenario_id)
        poses = np.stack([scene.center_x, scene.center_y, scene.center_z, scene.heading])
        if not np.isfinite(poses).all():
          raise ValueError(f'--policy {config.policy!r} produced non-finite poses on '
                           f'scenario {scenario_id!r} ({where}).')
        f.write(sub.encode_submission_entry(scene))
        log(f'[{k + 1}/{count}] {scenario_id}: {len(scene.object_ids)} sim agents x '
            f'{scene.num_rollouts} rollouts x {scene.center_x.shape[-1]} steps'
            f'{_invalid_note(state, rollouts)} ({time.perf_counter() - t0:.1f} s)')
      f.write(sub.encode_metadata(metadata))
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, out)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  result = ExportResult(path=out, scenario_ids=tuple(seen), num_rollouts=config.num_rollouts,
                        num_bytes=os.path.getsize(out),
                        seconds=time.perf_counter() - start)
  log(f'wrote {out}: {len(seen)} scenario(s), {result.num_bytes / 1e6:.2f} MB in '
      f'{result.seconds:.1f} s')
  return result


def _invalid_note(state: SimulatorState, rollouts: Any) -> str:
  """A warning for sim-agent steps the policy left invalid (exported as it left them:
  WOSAC scores every step of every sim agent)."""
  log = state.log_trajectory
  sim = np.asarray(log.valid)[:, INIT_STEPS - 1] & np.asarray(state.object_metadata.is_valid)
  bad = int((~np.asarray(rollouts.valid)[:, sim]).sum())
  return f', warning: {bad} invalid sim-agent steps' if bad else ''
