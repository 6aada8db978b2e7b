"""TFDS builder of the synthetic dataset: offline prepare, splits, element -> state."""

import jax
import numpy as np
import pytest

from spacer_jax.data import tfds_synthetic, writer
from spacer_jax.data.generator import generate_scenario

CONFIG = tfds_synthetic.SyntheticConfig(
    name='test_tiny', num_train=3, num_validation=1, num_test=2, num_objects=16,
    num_roadgraph_points=2000, seed=5)


@pytest.fixture(scope='module')
def builder(tmp_path_factory):
  b = tfds_synthetic.SpacerSynthetic(config=CONFIG,
                                     data_dir=str(tmp_path_factory.mktemp('tfds')))
  tfds_synthetic.prepare(b)
  return b


def _generated(split, index):
  gen = writer.WriterConfig(out_dir='', num_scenarios=1, num_objects=16,
                            num_roadgraph_points=2000).generator_config()
  return generate_scenario(writer.scenario_seed(5, split, index), gen)


def _assert_same(a, b):
  leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_split_sizes(builder):
  splits = builder.info.splits
  assert {k: splits[k].num_examples for k in ('train', 'validation', 'test')} == {
      'train': 3, 'validation': 1, 'test': 2}


def test_elements_are_the_generator_scenarios_in_order(builder):
  import tensorflow_datasets as tfds
  elements = list(tfds.as_numpy(builder.as_dataset(split='train')))
  assert [int(e['index']) for e in elements] == [0, 1, 2]
  assert [e['scenario_id'].decode() for e in elements] == [
      writer.scenario_id(5, 'train', i) for i in range(3)]
  state = tfds_synthetic.element_to_state(elements[2], 16, 2000)
  assert state.log_trajectory.x.shape == (16, 91)
  _assert_same(_generated('train', 2), state)
  # The same bytes as the dataset writer's record of that scenario.
  gen = writer.WriterConfig(out_dir='', num_scenarios=3, seed=5, num_objects=16,
                            num_roadgraph_points=2000).generator_config()
  [(index, data, _)] = writer.generate_records([2], 'train', 5, gen)
  assert index == 2 and data == elements[2]['example']


def test_batches_become_batched_states(builder):
  batches = list(tfds_synthetic.iterate_states(builder, 'test', batch_size=2))
  assert len(batches) == 1 and batches[0].log_trajectory.x.shape == (2, 16, 91)
  for i in range(2):
    _assert_same(_generated('test', i), jax.tree_util.tree_map(lambda x, i=i: x[i],
                                                               batches[0]))


def test_bad_elements_and_configs_are_named():
  with pytest.raises(KeyError, match="'example'"):
    tfds_synthetic.element_to_state({'index': 0}, 16, 2000)
  with pytest.raises(ValueError, match='shape'):
    tfds_synthetic.element_to_state({'example': np.zeros((1, 1), object)}, 16, 2000)
  with pytest.raises(ValueError, match='num_objects'):
    tfds_synthetic.SyntheticConfig(name='bad', num_objects=500)
