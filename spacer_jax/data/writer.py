"""Sharded, resumable writing of the synthetic dataset as WOMD tf.Example TFRecords.

Layout of ``out_dir`` (one split per call of :func:`write_split`)::

  out_dir/train/synthetic-train.tfrecord-00003-of-00016   # shard_size records each
  out_dir/manifest-train.json                             # config + finished shards
  out_dir/.incomplete/                                    # temporary files

Scenario ``i`` of a split is ``generate_scenario(scenario_seed(seed, split, i), ...)``:
a deterministic function of ``(seed, split, i)`` and the generator config, so a
dataset is the same whatever the number of workers or interruptions. A shard is
written under a temporary name and renamed into place (atomic on one filesystem),
then the manifest, also replaced atomically, records it. A killed run therefore
leaves finished shards (in the manifest) and at most some temporary files; the next
run with the same flags writes only the missing shards and never touches finished
ones. A run with different flags is refused, naming what differs. The split folder
holds only finished shards, so ``'out_dir/train/*'`` globs straight into
``spacer_jax.data.womd.make_dataset``.

Generation is numpy on the host; with ``num_workers > 1`` it runs in the generator's
spawn-based process pool (``spacer_jax.data.generator.parallel``; JAX is not
fork-safe), whose workers keep JAX on the CPU and serialise the records themselves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Optional

import numpy as np
import tqdm

from spacer_jax.data.generator import GENERATOR_VERSION, GeneratorConfig
from spacer_jax.data.generator.parallel import generate_parallel
from spacer_jax.data.stats import DatasetSummary
from spacer_jax.data.womd import records, tf_example
from spacer_jax.data.womd._tf import tf
from spacer_jax.sim.datatypes import SimulatorState

SPLITS = ('train', 'validation', 'test')
MANIFEST_VERSION = 1
DATASET_NAME = 'spacer_synthetic'
_TMP_DIR = '.incomplete'

logger = logging.getLogger(__name__)


class WriteRefused(RuntimeError):
  """The split cannot be written now: another process writes it, or a finished shard
  changed on disk. The user's to resolve (one error line in make_dataset), not a bug."""


def scenario_seed(seed: int, split: str, index: int) -> int:
  """The generator seed of scenario ``index`` of ``split``: a 63-bit hash of the three.

  Splits never share scenarios; neighbouring indices give unrelated seeds.
  """
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}.')
  if seed < 0 or index < 0:
    raise ValueError(f'seed and index must be >= 0, got seed={seed}, index={index}.')
  lo, hi = np.random.SeedSequence([seed, SPLITS.index(split), index]).generate_state(2)
  return (int(hi) >> 1) << 32 | int(lo)


def scenario_id(seed: int, split: str, index: int) -> str:
  """The ``scenario/id`` written with scenario ``index`` (readable, unique per dataset)."""
  return f'synthetic-{split}-s{seed}-{index:07d}'


@dataclasses.dataclass(frozen=True)
class WriterConfig:
  """One split of the synthetic dataset and how to write it.

  Attributes:
    out_dir: dataset root (local filesystem).
    num_scenarios: scenarios in the split.
    split: 'train', 'validation' or 'test'.
    seed: dataset seed (>= 0); scenario seeds derive from it (:func:`scenario_seed`).
    num_objects: object slots per scenario (<= 128, WOMD's rows).
    num_roadgraph_points: roadgraph slots (1000 ... 30000); records are padded to
      WOMD's 20000 (or 30000), read them back with ``max_num_rg_points`` = this.
    shard_size: scenarios per TFRecord file.
    num_workers: generator processes (1: generate in this process).
  """

  out_dir: str
  num_scenarios: int
  split: str = 'train'
  seed: int = 0
  num_objects: int = 64
  num_roadgraph_points: int = 20000
  shard_size: int = 64
  num_workers: int = 1

  def __post_init__(self):
    if self.split not in SPLITS:
      raise ValueError(f'split must be one of {SPLITS}, got {self.split!r}.')
    if self.num_scenarios < 1 or self.shard_size < 1 or self.num_workers < 1:
      raise ValueError('num_scenarios, shard_size and num_workers must be >= 1, got '
                       f'{self.num_scenarios}, {self.shard_size}, {self.num_workers}.')
    if self.seed < 0:
      raise ValueError(f'seed must be >= 0, got {self.seed}.')
    if not 2 <= self.num_objects <= tf_example.NUM_OBJECTS:
      raise ValueError(f'num_objects must be in [2, {tf_example.NUM_OBJECTS}] (WOMD '
                       f'tf.Example rows), got {self.num_objects}.')
    if not 1000 <= self.num_roadgraph_points <= max(tf_example.ROADGRAPH_SIZES):
      raise ValueError(f'num_roadgraph_points must be in [1000, '
                       f'{max(tf_example.ROADGRAPH_SIZES)}], got '
                       f'{self.num_roadgraph_points}.')

  @property
  def num_shards(self) -> int:
    return -(-self.num_scenarios // self.shard_size)

  def generator_config(self) -> GeneratorConfig:
    return GeneratorConfig(num_objects=self.num_objects,
                           num_roadgraph_points=self.num_roadgraph_points)

  def identity(self) -> dict:
    """What defines the data (checked on resume); not out_dir or num_workers."""
    return {'split': self.split, 'num_scenarios': self.num_scenarios, 'seed': self.seed,
            'shard_size': self.shard_size, 'format': 'tf_example',
            'generator_version': GENERATOR_VERSION,
            'generator': dataclasses.asdict(self.generator_config())}


def shard_name(split: str, shard: int, num_shards: int) -> str:
  return f'synthetic-{split}.tfrecord-{shard:05d}-of-{num_shards:05d}'


def manifest_path(out_dir: str, split: str) -> str:
  return os.path.join(out_dir, f'manifest-{split}.json')


def split_pattern(out_dir: str, split: str) -> str:
  """The glob of a split's shards, for ``womd.make_dataset``."""
  return os.path.join(out_dir, split, f'synthetic-{split}.tfrecord-*')


def shard_indices(config: WriterConfig, shard: int) -> range:
  """Scenario indices stored in ``shard``, in record order."""
  return range(shard * config.shard_size,
               min((shard + 1) * config.shard_size, config.num_scenarios))


# -- generation (in this process or in spawned workers) -----------------------------


def record_and_summary(state: SimulatorState) -> tuple[bytes, DatasetSummary]:
  """The generator workers' ``map_fn``: tf.Example bytes (no id yet) and the summary.

  Serialises in the worker so that only bytes cross the process boundary; map order is
  made deterministic (by default it varies between processes).
  """
  data = tf_example.state_to_example(state).SerializeToString(deterministic=True)
  return data, DatasetSummary.of_state(state)


def with_scenario_id(data: bytes, sid: str) -> bytes:
  """Adds the ``scenario/id`` feature to a serialised tf.Example.

  Protobuf parses concatenated messages as their merge, so appending an Example that
  holds only this feature adds it to the feature map without re-serialising the
  (1.5 MB) record; every tf.Example parser reads the result.
  """
  extra = tf.train.Example(features=tf.train.Features(feature={
      tf_example.SCENARIO_ID: tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[sid.encode('utf-8')]))}))
  return data + extra.SerializeToString()


def generate_records(indices: Iterable[int], split: str, seed: int,
                     config: GeneratorConfig, num_workers: int = 1
                     ) -> Iterator[tuple[int, bytes, DatasetSummary]]:
  """Serialised scenarios ``(index, bytes, summary)`` of a split, in ``indices`` order.

  ``num_workers > 1`` generates in spawned processes (``generate_parallel``), which
  stop when this iterator is exhausted, closed or garbage collected.
  """
  indices = list(indices)
  seeds = [scenario_seed(seed, split, i) for i in indices]
  with contextlib.closing(generate_parallel(seeds, config, num_workers,
                                            map_fn=record_and_summary)) as results:
    for index, (_, (data, summary)) in zip(indices, results):
      yield index, with_scenario_id(data, scenario_id(seed, split, index)), summary


def generate_states(indices: Iterable[int], split: str, seed: int, config: GeneratorConfig,
                    num_workers: int = 1) -> Iterator[tuple[int, SimulatorState]]:
  """The split's scenarios ``(index, state)``, in ``indices`` order."""
  indices = list(indices)
  seeds = [scenario_seed(seed, split, i) for i in indices]
  with contextlib.closing(generate_parallel(seeds, config, num_workers)) as results:
    for index, (_, state) in zip(indices, results):
      yield index, state


# -- manifest -------------------------------------------------------------------------


def _atomic_write(path: str, data: bytes, tmp_dir: str) -> None:
  """Writes ``data`` to a temporary file, syncs it and renames it to ``path``."""
  tmp = os.path.join(tmp_dir, os.path.basename(path) + f'.tmp-{os.getpid()}')
  with open(tmp, 'wb') as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_manifest(out_dir: str, split: str) -> Optional[dict]:
  """The manifest of ``split`` in ``out_dir``, or None when there is none."""
  path = manifest_path(out_dir, split)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _flatten(d: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def check_resumable(manifest: dict, config: WriterConfig) -> None:
  """Raises ValueError naming every setting that differs from the manifest's."""
  old = _flatten(manifest.get('config', {}))
  new = _flatten(json.loads(json.dumps(config.identity())))  # tuples -> lists
  diff = [f'{k}: written with {old.get(k)!r}, requested {new.get(k)!r}'
          for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
  if manifest.get('version') != MANIFEST_VERSION:
    diff.insert(0, f'manifest version {manifest.get("version")!r}, '
                f'expected {MANIFEST_VERSION}')
  if diff:
    raise ValueError(f'{manifest_path(config.out_dir, config.split)} was written with '
                     'another configuration; refusing to resume into it ('
                     + '; '.join(diff) + '). Use another --out or the same flags.')


# -- writing --------------------------------------------------------------------------


@dataclasses.dataclass
class WriteResult:
  """What :func:`write_split` did.

  Attributes:
    files: every shard of the split, in order.
    shards_written: shards written by this call.
    shards_reused: shards found finished (from an earlier run).
    summary: the whole split's :class:`DatasetSummary`.
  """

  files: list[str]
  shards_written: list[int]
  shards_reused: list[int]
  summary: DatasetSummary


@contextlib.contextmanager
def _split_lock(out_dir: str, split: str):
  """An exclusive lock per split: two writers into one folder would race."""
  path = os.path.join(out_dir, _TMP_DIR, f'{split}.lock')
  with open(path, 'w') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
      raise WriteRefused(f'another process is writing {split} into {out_dir}.') from e
    yield


def _finished_shards(manifest: dict, config: WriterConfig) -> dict[int, dict]:
  """Finished shards whose files are intact. A deleted file is regenerated (warning);
  a file of another size is an error (it is never overwritten)."""
  done = {}
  for key, entry in manifest.get('shards', {}).items():
    path = os.path.join(config.out_dir, config.split, entry['file'])
    if not os.path.exists(path):
      logger.warning('finished shard %s is missing; writing it again.', path)
      continue
    size = os.path.getsize(path)
    if size != entry['bytes']:
      raise WriteRefused(f'{path} has {size} bytes, the manifest says {entry["bytes"]}: '
                         'the file changed after it was written. Delete it to have it '
                         'written again.')
    done[int(key)] = entry
  return done


def write_split(config: WriterConfig, progress: bool = True,
                on_shard: Optional[Callable[[int], None]] = None) -> WriteResult:
  """Writes (or finishes) one split of the synthetic dataset.

  Args:
    config: what to write.
    progress: show a tqdm progress bar (scenarios).
    on_shard: called with the shard index after each shard is recorded as finished.

  Returns:
    A :class:`WriteResult`.

  Raises:
    ValueError: ``out_dir`` holds this split written with another configuration.
    WriteRefused: another process writes the same split, or a finished shard changed.
  """
  split_dir = os.path.join(config.out_dir, config.split)
  tmp_dir = os.path.join(config.out_dir, _TMP_DIR)
  os.makedirs(split_dir, exist_ok=True)
  os.makedirs(tmp_dir, exist_ok=True)
  names = [shard_name(config.split, s, config.num_shards) for s in range(config.num_shards)]
  with _split_lock(config.out_dir, config.split):
    manifest = read_manifest(config.out_dir, config.split)
    if manifest is None:
      manifest = {'version': MANIFEST_VERSION, 'dataset': DATASET_NAME,
                  'config': config.identity(), 'num_shards': config.num_shards,
                  'shards': {}}
    else:
      check_resumable(manifest, config)
    for name in os.listdir(tmp_dir):  # leftovers of a killed run
      if name.startswith(f'synthetic-{config.split}.') or name.startswith(
          f'manifest-{config.split}.'):
        os.remove(os.path.join(tmp_dir, name))
    done = _finished_shards(manifest, config)
    manifest['shards'] = {str(k): v for k, v in sorted(done.items())}
    todo = [s for s in range(config.num_shards) if s not in done]
    reused = sorted(done)

    def save_manifest():
      manifest['complete'] = len(manifest['shards']) == config.num_shards
      _atomic_write(manifest_path(config.out_dir, config.split),
                    json.dumps(manifest, indent=1).encode(), tmp_dir)

    save_manifest()
    indices = [i for s in todo for i in shard_indices(config, s)]
    bar = tqdm.tqdm(total=config.num_scenarios, initial=config.num_scenarios - len(indices),
                    unit='scenario', desc=f'{config.split}', disable=not progress)
    stream = generate_records(indices, config.split, config.seed,
                              config.generator_config(), config.num_workers)
    try:
      for shard in todo:
        shard_records, summary = [], DatasetSummary()
        for _ in shard_indices(config, shard):
          _, data, s = next(stream)
          shard_records.append(data)
          summary = summary.merge(s)
          bar.update(1)
        tmp = os.path.join(tmp_dir, names[shard])
        records.write_records(tmp, shard_records)
        with open(tmp, 'rb') as f:
          os.fsync(f.fileno())
        os.replace(tmp, os.path.join(split_dir, names[shard]))
        manifest['shards'][str(shard)] = {
            'file': names[shard], 'num_scenarios': len(shard_records),
            'bytes': os.path.getsize(os.path.join(split_dir, names[shard])),
            'summary': summary.to_json()}
        manifest['shards'] = dict(sorted(manifest['shards'].items(), key=lambda kv:
                                         int(kv[0])))
        save_manifest()
        if on_shard is not None:
          on_shard(shard)
    finally:
      stream.close()  # stops the worker pool, also on errors
      bar.close()
  return WriteResult(files=[os.path.join(split_dir, n) for n in names],
                     shards_written=todo, shards_reused=reused,
                     summary=manifest_summary(manifest))


def manifest_summary(manifest: dict) -> DatasetSummary:
  """The merged :class:`DatasetSummary` of a manifest's finished shards."""
  total = DatasetSummary()
  for entry in manifest.get('shards', {}).values():
    total = total.merge(DatasetSummary.from_json(entry['summary']))
  return total


def dataset_summaries(out_dir: str, splits: Sequence[str] = SPLITS
                      ) -> dict[str, DatasetSummary]:
  """Split -> summary of every split of ``out_dir`` that has a manifest."""
  out = {}
  for split in splits:
    manifest = read_manifest(out_dir, split)
    if manifest is not None:
      out[split] = manifest_summary(manifest)
  return out
