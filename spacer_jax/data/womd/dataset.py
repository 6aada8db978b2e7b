"""Batched ``SimulatorState`` s from WOMD TFRecord files, sharded across hosts.

TensorFlow reads the TFRecords (``tf.data.TFRecordDataset``: C++ I/O and checksums,
local or ``gs://`` paths through ``tf.io.gfile``); records are decoded on the host into
numpy ``SimulatorState`` s and stacked into batches. Decoding runs in a background
thread so it overlaps with the (GIL-free) JAX computation that consumes the batches.

Example::

  ds = make_dataset('/data/womd/training/training_tfexample.tfrecord-*',
                    batch_size=8, max_num_objects=64)
  for batch in ds:  # SimulatorState, leaves (8, ...)
    state = jax.device_put(batch)
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Optional, Union

import jax
import numpy as np

from spacer_jax.data.womd import records, scenario_proto, tf_example
from spacer_jax.data.womd._tf import tf
from spacer_jax.data.womd.errors import RecordError
from spacer_jax.sim.datatypes import (
    DEFAULT_NUM_OBJECTS,
    DEFAULT_NUM_ROADGRAPH_POINTS,
    SimulatorState,
)

FORMATS = ('tf_example', 'scenario')
_MAX_KEPT_ERRORS = 100  # skipped-record errors remembered in ReadStats.errors
# How a wrong-format hint names the setting to change. The trainers and evaluate take
# it from their config; binaries with another flag say so with set_format_flag.
_format_flag = '--config.data.format'
_FORMAT_NAMES = {'tf_example': 'tf.Example', 'scenario': 'Scenario proto'}

logger = logging.getLogger(__name__)


def set_format_flag(flag: str) -> None:
  """Names the command-line setting of the record format in wrong-format hints
  (default ``--config.data.format``; e.g. ``--format`` for data_stats)."""
  global _format_flag
  _format_flag = flag


def sniff_format(serialized: bytes) -> Optional[str]:
  """The format (of :data:`FORMATS`) whose parser accepts ``serialized``, or None."""
  try:
    tf_example.parse_example(serialized)
    return 'tf_example'
  except Exception:  # any failure just means "not this format"
    pass
  try:
    # Protobuf reads many byte strings as some message; a Scenario has tracks.
    if scenario_proto.parse_scenario(serialized).tracks:
      return 'scenario'
  except Exception:
    pass
  return None


def with_format_hint(err: RecordError, serialized: bytes, format: str) -> RecordError:
  """An error saying "is a tf.Example, not a Scenario proto; try --config.data.format=
  tf_example" (or the reverse) when ``serialized`` is of the other format; else ``err``."""
  found = sniff_format(serialized)
  if found is None or found == format:
    return err
  # The other format's field error (say "no tracks") would only mislead: name the cause.
  expected = _FORMAT_NAMES.get(format, format)
  return RecordError(f'is a {_FORMAT_NAMES[found]}, not a {expected}; try '
                     f'{_format_flag}={found}', file=err.file, record_index=err.record_index)


def decode_record(serialized: bytes, format: str = 'tf_example',
                  max_num_objects: int = DEFAULT_NUM_OBJECTS,
                  max_num_rg_points: int = DEFAULT_NUM_ROADGRAPH_POINTS
                  ) -> SimulatorState:
  """One serialized record (``format``: 'tf_example' or 'scenario') -> state.

  Raises:
    RecordError: naming the field at fault (file and index are added by the caller),
      with a hint when the record is of the other format.
  """
  try:
    if format == 'tf_example':
      return tf_example.example_to_state(
          tf_example.parse_example(serialized), max_num_objects, max_num_rg_points)
    if format == 'scenario':
      return scenario_proto.scenario_to_state(serialized, max_num_objects,
                                              max_num_rg_points)
  except RecordError as e:
    hinted = with_format_hint(e, serialized, format)
    if hinted is e:
      raise
    raise hinted from e
  raise ValueError(f'format must be one of {FORMATS}, got {format!r}.')


def decode_indexed(index: records.RecordIndex, i: int, format: str = 'tf_example',
                   max_num_objects: int = DEFAULT_NUM_OBJECTS,
                   max_num_rg_points: int = DEFAULT_NUM_ROADGRAPH_POINTS
                   ) -> SimulatorState:
  """Record ``i`` of ``index``, decoded; a bad record's error names its file and index."""
  data = index.read(i)
  try:
    return decode_record(data, format, max_num_objects, max_num_rg_points)
  except RecordError as e:
    raise e.with_location(*index.locate(i)) from e


def list_files(file_pattern: Union[str, Sequence[str]]) -> list[str]:
  """Sorted files matching a glob (or comma-separated globs, or a list of them).

  Raises:
    FileNotFoundError: when nothing matches.
  """
  patterns = file_pattern.split(',') if isinstance(file_pattern, str) else file_pattern
  files = sorted({f for p in patterns if p for f in tf.io.gfile.glob(p.strip())})
  if not files:
    raise FileNotFoundError(f'no file matches {file_pattern!r}.')
  return files


def read_scenarios(file_pattern: Union[str, Sequence[str]], start: int, count: int,
                   format: str = 'tf_example', max_num_objects: int = 128,
                   max_num_rg_points: int = 30000) -> list[SimulatorState]:
  """Records ``start .. start + count - 1`` of the files (as many as exist), decoded.

  Seeks straight to them through a :class:`records.RecordIndex` (no record before
  ``start`` is read or parsed).
  """
  index = records.RecordIndex(list_files(file_pattern))
  return [decode_indexed(index, i, format, max_num_objects, max_num_rg_points)
          for i in range(start, min(start + count, len(index)))]


def shard_files(files: Sequence[str], num_hosts: int, host_index: int
                ) -> tuple[list[str], bool]:
  """This host's files: every ``num_hosts``-th file starting at ``host_index``.

  Returns:
    (files, split_records): with fewer files than hosts every host reads all files and
    ``split_records`` is True: records are then split round-robin instead.
  """
  if not 0 <= host_index < num_hosts:
    raise ValueError(f'host_index {host_index} not in [0, {num_hosts}).')
  if len(files) >= num_hosts:
    return list(files[host_index::num_hosts]), False
  logger.warning('%d files for %d hosts: every host reads all files and keeps every '
                 '%d-th record.', len(files), num_hosts, num_hosts)
  return list(files), True


@dataclasses.dataclass
class ReadStats:
  """Counts of the records this iterator has seen (all epochs).

  Attributes:
    records_read: records decoded into states.
    records_skipped: bad records skipped (``skip_bad_records``); an unreadable file
      tail counts as one.
    errors: the first skipped records' errors (file, record index, field).
  """

  records_read: int = 0
  records_skipped: int = 0
  errors: list[RecordError] = dataclasses.field(default_factory=list)

  def add_skip(self, err: RecordError) -> None:
    self.records_skipped += 1
    if len(self.errors) < _MAX_KEPT_ERRORS:
      self.errors.append(err)
    logger.warning('skipping bad WOMD record: %s', err)


def stack_states(states: Sequence[SimulatorState]) -> SimulatorState:
  """Stacks host (numpy) states on a new leading batch axis."""
  return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *states)


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
  """What :class:`WomdDataset` reads and how (see :func:`make_dataset`)."""

  files: tuple[str, ...]
  format: str = 'tf_example'
  batch_size: Optional[int] = 1
  max_num_objects: int = DEFAULT_NUM_OBJECTS
  max_num_rg_points: int = DEFAULT_NUM_ROADGRAPH_POINTS
  shuffle: bool = False
  shuffle_buffer: int = 64
  repeat: bool = False
  seed: int = 0
  num_hosts: int = 1
  host_index: int = 0
  skip_bad_records: bool = False
  drop_remainder: bool = False
  prefetch: int = 2

  def __post_init__(self):
    if self.format not in FORMATS:
      raise ValueError(f'format must be one of {FORMATS}, got {self.format!r}.')
    if self.batch_size is not None and self.batch_size < 1:
      raise ValueError(f'batch_size must be >= 1 or None, got {self.batch_size}.')
    if self.shuffle_buffer < 1 or self.prefetch < 0:
      raise ValueError('shuffle_buffer must be >= 1 and prefetch >= 0.')


class WomdDataset:
  """An iterator of ``SimulatorState`` batches (numpy leaves ``(batch_size, ...)``).

  ``stats`` counts read and skipped records. Iterating again after exhaustion is not
  supported: build a new dataset (or use ``repeat``).
  """

  def __init__(self, config: DatasetConfig):
    self.config = config
    self.files, self._split_records = shard_files(config.files, config.num_hosts,
                                                  config.host_index)
    self.stats = ReadStats()
    self._iter = self._batches() if config.prefetch == 0 else _prefetch(
        self._batches(), config.prefetch)

  def __iter__(self) -> Iterator[SimulatorState]:
    return self

  def __next__(self) -> SimulatorState:
    return next(self._iter)

  def _records(self, epoch: int) -> Iterator[tuple[str, int, bytes]]:
    """(file, record index, bytes) of this host, one epoch, in (shuffled) file order."""
    cfg = self.config
    files = list(self.files)
    if cfg.shuffle:
      np.random.default_rng([cfg.seed, cfg.host_index, epoch]).shuffle(files)
    counter = 0
    for path in files:
      for index, data in records.read_records(path, skip_bad_records=cfg.skip_bad_records,
                                              on_skip=self.stats.add_skip):
        counter += 1
        if self._split_records and (counter - 1) % cfg.num_hosts != cfg.host_index:
          continue
        yield path, index, data

  def _shuffled(self, epoch: int) -> Iterator[tuple[str, int, bytes]]:
    cfg = self.config
    if not cfg.shuffle:
      yield from self._records(epoch)
      return
    rng = np.random.default_rng([cfg.seed, cfg.host_index, epoch, 1])
    buffer: list[tuple[str, int, bytes]] = []
    for item in self._records(epoch):
      if len(buffer) < cfg.shuffle_buffer:
        buffer.append(item)
        continue
      k = int(rng.integers(len(buffer)))
      buffer[k], item = item, buffer[k]
      yield item
    rng.shuffle(buffer)
    yield from buffer

  def _states(self) -> Iterator[SimulatorState]:
    cfg = self.config
    epoch = 0
    while True:
      read_before = self.stats.records_read
      for path, index, data in self._shuffled(epoch):
        try:
          state = decode_record(data, cfg.format, cfg.max_num_objects,
                                cfg.max_num_rg_points)
        except RecordError as e:
          err = e.with_location(path, index)
          if not cfg.skip_bad_records:
            raise err from e
          self.stats.add_skip(err)
          continue
        except Exception as e:  # any decoding failure is a bad record
          err = RecordError(f'{type(e).__name__}: {e}', file=path, record_index=index)
          if not cfg.skip_bad_records:
            raise err from e
          self.stats.add_skip(err)
          continue
        self.stats.records_read += 1
        yield state
      if self.stats.records_skipped:
        logger.warning('epoch %d: %d records read, %d skipped so far.', epoch,
                       self.stats.records_read, self.stats.records_skipped)
      if not cfg.repeat:
        return
      if self.stats.records_read == read_before:
        raise RuntimeError(f'no readable record in {len(self.files)} file(s) of this host; '
                           'refusing to repeat forever.')
      epoch += 1

  def _batches(self) -> Iterator[SimulatorState]:
    size = self.config.batch_size
    if size is None:
      yield from self._states()
      return
    batch: list[SimulatorState] = []
    for state in self._states():
      batch.append(state)
      if len(batch) == size:
        yield stack_states(batch)
        batch = []
    if batch and not self.config.drop_remainder:
      yield stack_states(batch)


_DONE = object()


def _prefetch(it: Iterator, depth: int) -> Iterator:
  """Runs ``it`` in a daemon thread, ``depth`` items ahead; re-raises its errors."""
  q: queue.Queue = queue.Queue(maxsize=depth)
  stop = threading.Event()

  def work():
    try:
      for item in it:
        while not stop.is_set():
          try:
            q.put((item, None), timeout=0.1)
            break
          except queue.Full:
            continue
        if stop.is_set():
          return
      q.put((_DONE, None))
    except BaseException as e:  # handed to the consumer thread
      q.put((_DONE, e))

  thread = threading.Thread(target=work, daemon=True, name='womd-prefetch')
  thread.start()
  try:
    while True:
      item, error = q.get()
      if error is not None:
        raise error
      if item is _DONE:
        return
      yield item
  finally:
    stop.set()


def make_dataset(file_pattern: Union[str, Sequence[str]], format: str = 'tf_example',
                 batch_size: Optional[int] = 1,
                 max_num_objects: int = DEFAULT_NUM_OBJECTS,
                 max_num_rg_points: int = DEFAULT_NUM_ROADGRAPH_POINTS,
                 shuffle: bool = False, repeat: bool = False,
                 num_hosts: Optional[int] = None, host_index: Optional[int] = None,
                 skip_bad_records: bool = False, *, seed: int = 0,
                 shuffle_buffer: int = 64, drop_remainder: bool = False,
                 prefetch: int = 2) -> WomdDataset:
  """An iterator of batched ``SimulatorState`` s read from WOMD TFRecords.

  Args:
    file_pattern: glob (or comma-separated globs, or a list) of TFRecord files.
    format: 'tf_example' (WOMD ``tf_example/``) or 'scenario' (``scenario/`` protos).
    batch_size: states per batch (leaves ``(batch_size, ...)``); None yields unbatched
      states.
    max_num_objects, max_num_rg_points: slots per state (see ``example_to_state``).
    shuffle: shuffle the file order per epoch and records through a buffer of
      ``shuffle_buffer`` records (seeded by ``seed``, the host and the epoch).
    repeat: loop over the files forever.
    num_hosts, host_index: this host's share of the files (defaults:
      ``jax.process_count()``, ``jax.process_index()``).
    skip_bad_records: skip truncated, corrupt or invalid records (counted in
      ``dataset.stats`` and logged) instead of raising.
    drop_remainder: drop a last, smaller batch.
    prefetch: batches decoded ahead in a background thread (0: decode inline).

  Returns:
    A :class:`WomdDataset` (an iterator; ``.stats`` holds the counts).

  Raises:
    FileNotFoundError: nothing matches ``file_pattern``.
    RecordError: (while iterating, unless ``skip_bad_records``) naming the file, the
      record index and the field of a bad record.
  """
  config = DatasetConfig(
      files=tuple(list_files(file_pattern)), format=format, batch_size=batch_size,
      max_num_objects=max_num_objects, max_num_rg_points=max_num_rg_points,
      shuffle=shuffle, shuffle_buffer=shuffle_buffer, repeat=repeat, seed=seed,
      num_hosts=jax.process_count() if num_hosts is None else num_hosts,
      host_index=jax.process_index() if host_index is None else host_index,
      skip_bad_records=skip_bad_records, drop_remainder=drop_remainder,
      prefetch=prefetch)
  return WomdDataset(config)
