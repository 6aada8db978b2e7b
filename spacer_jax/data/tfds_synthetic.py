"""A TFDS builder for the synthetic dataset (train / validation / test), offline.

Each element is one scenario: its WOMD ``tf.Example`` serialised (``'example'``,
a scalar string; loss-free, exactly what :mod:`spacer_jax.data.writer` writes), its
``'scenario_id'`` and its ``'index'`` in the split. Scenario ``i`` of a split is the
same as in ``make_dataset`` with the same seed and sizes (see
:func:`spacer_jax.data.writer.scenario_seed`). Elements keep index order
(``disable_shuffling``).

Usage::

  builder = SpacerSynthetic(config='small', data_dir='/data/tfds')
  prepare(builder)                                  # generates offline
  for state in iterate_states(builder, 'train', batch_size=16):  # SimulatorState
    ...

A custom size is a :class:`SyntheticConfig` passed as ``config=``. TensorFlow is
imported with its GPUs hidden (through ``spacer_jax.data.womd``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator, Mapping

import numpy as np

# Before TFDS: TensorFlow must be imported with its GPUs hidden (womd._tf does that).
from spacer_jax.data.womd import _tf, tf_example  # isort: skip
import tensorflow_datasets as tfds  # noqa: I001
from etils import epath

from spacer_jax.data import writer
from spacer_jax.data.womd.dataset import stack_states
from spacer_jax.sim.datatypes import SimulatorState

tf = _tf.tf


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
  """Sizes of the synthetic dataset (part of its identity: name configs uniquely).

  Attributes:
    num_train, num_validation, num_test: scenarios per split (>= 1).
    num_objects: object slots per scenario (<= 128).
    num_roadgraph_points: roadgraph slots (1000 ... 30000).
    seed: dataset seed.
  """

  num_train: int = 1000
  num_validation: int = 100
  num_test: int = 100
  num_objects: int = 64
  num_roadgraph_points: int = 20000
  seed: int = 0

  def __post_init__(self):
    for split in writer.SPLITS:
      # Validates sizes with the writer's rules and error messages.
      writer.WriterConfig(out_dir='', num_scenarios=self.split_size(split), split=split,
                          seed=self.seed, num_objects=self.num_objects,
                          num_roadgraph_points=self.num_roadgraph_points)

  def split_size(self, split: str) -> int:
    return {'train': self.num_train, 'validation': self.num_validation,
            'test': self.num_test}[split]


class SpacerSynthetic(tfds.core.GeneratorBasedBuilder):
  """Procedurally generated WOMD-like scenarios as serialised WOMD tf.Examples."""

  # The major version follows the generator's (GENERATOR_VERSION): TFDS keeps prepared
  # data per version, so data from an older generator is never read as today's.
  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.',
                   '2.0.0': 'generator-v5: maps hold the whole log, stable tracks, parked '
                            'cars.'}
  BUILDER_CONFIGS = [
      SyntheticConfig(name='default', description='1000/100/100 scenarios, 64 objects.'),
      SyntheticConfig(name='small', description='100/20/20 scenarios, 64 objects.',
                      num_train=100, num_validation=20, num_test=20),
      SyntheticConfig(name='tiny', description='4/2/2 scenarios, 16 objects, 2000 '
                      'roadgraph points (tests).', num_train=4, num_validation=2,
                      num_test=2, num_objects=16, num_roadgraph_points=2000),
  ]

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default needs the optional `importlib_resources` package; the module file
    # is all it looks for (a checksums file beside it: there is none, nothing is
    # downloaded).
    return epath.Path(inspect.getfile(cls))

  def __init__(self, *, num_workers: int = 1, **kwargs):
    """``num_workers``: generator processes used by ``download_and_prepare``."""
    self._num_workers = num_workers
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return self.dataset_info_from_configs(
        description=(f'Synthetic WOMD-like scenarios ({cfg.num_objects} object slots, '
                     f'{cfg.num_roadgraph_points} roadgraph slots, seed {cfg.seed}) as '
                     'serialised WOMD tf.Examples.'),
        features=tfds.features.FeaturesDict({
            'example': tfds.features.Tensor(shape=(), dtype=tf.string),
            'scenario_id': tfds.features.Text(),
            'index': tfds.features.Scalar(dtype=tf.int64),
        }),
        disable_shuffling=True,
        homepage='https://github.com/',  # no download: generated locally
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split) for split in writer.SPLITS}

  def _generate_examples(self, split: str):
    cfg = self.builder_config
    gen = writer.WriterConfig(out_dir='', num_scenarios=cfg.split_size(split), split=split,
                              seed=cfg.seed, num_objects=cfg.num_objects,
                              num_roadgraph_points=cfg.num_roadgraph_points
                              ).generator_config()
    for index, data, _ in writer.generate_records(range(cfg.split_size(split)), split,
                                                  cfg.seed, gen, self._num_workers):
      yield index, {'example': data, 'index': index,
                    'scenario_id': writer.scenario_id(cfg.seed, split, index)}


def prepare(builder: tfds.core.DatasetBuilder) -> None:
  """``download_and_prepare`` without looking for a prepared copy on GCS (offline)."""
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def element_to_state(element: Mapping[str, np.ndarray], num_objects: int,
                     num_roadgraph_points: int) -> SimulatorState:
  """A numpy TFDS element (or a batch of them) -> ``SimulatorState`` (numpy leaves).

  Args:
    element: ``{'example': bytes or (B,) bytes, ...}`` from ``tfds.as_numpy``.
    num_objects, num_roadgraph_points: the builder config's sizes.

  Returns:
    Unbatched for a scalar ``'example'``, else leaves ``(B, ...)``.
  """
  if 'example' not in element:
    raise KeyError(f"element needs an 'example' feature, has {sorted(element)}.")
  data = np.asarray(element['example'], dtype=object)
  decode = lambda b: tf_example.example_to_state(  # noqa: E731
      bytes(b), num_objects, num_roadgraph_points)
  if data.ndim == 0:
    return decode(data.item())
  if data.ndim != 1:
    raise ValueError(f"'example' must be a scalar or (batch,), got shape {data.shape}.")
  return stack_states([decode(b) for b in data])


def iterate_states(builder: SpacerSynthetic, split: str, batch_size: int | None = None
                   ) -> Iterator[SimulatorState]:
  """Prepared ``split`` as ``SimulatorState`` s (batched when ``batch_size`` is set)."""
  cfg = builder.builder_config
  ds = builder.as_dataset(split=split, batch_size=batch_size, shuffle_files=False)
  for element in tfds.as_numpy(ds):
    yield element_to_state(element, cfg.num_objects, cfg.num_roadgraph_points)
