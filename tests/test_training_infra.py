"""Checkpointer and MetricLogger: atomic resume, mismatch errors, NaN guard, event files."""

import io
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.training import Checkpointer, MetricLogger, format_progress


def test_checkpoint_round_trip_and_latest(tmp_path):
  ckpt = Checkpointer(str(tmp_path / 'ck'), max_to_keep=2)
  assert ckpt.restore({'a': jnp.zeros(2)}) is None
  for step in (1, 2, 3):
    ckpt.save(step, {'a': jnp.full(2, step, jnp.float32), 'n': jnp.int32(step)},
              {'cursor': step * 10})
  assert ckpt.latest_step() == 3
  step, state, meta = Checkpointer(str(tmp_path / 'ck')).restore(
      {'a': jnp.zeros(2), 'n': jnp.int32(0)})
  assert step == 3 and meta == {'cursor': 30}
  np.testing.assert_array_equal(state['a'], [3.0, 3.0])
  assert sorted(os.listdir(tmp_path / 'ck')) == ['2', '3']  # max_to_keep


def test_unfinished_checkpoint_is_ignored(tmp_path):
  ckpt = Checkpointer(str(tmp_path / 'ck'))
  ckpt.save(5, {'a': jnp.ones(2)})
  # A save killed half way leaves only a temporary directory behind.
  os.makedirs(tmp_path / 'ck' / '6.orbax-checkpoint-tmp-123')
  assert Checkpointer(str(tmp_path / 'ck')).latest_step() == 5


def test_mismatched_template_names_the_checkpoint(tmp_path):
  ckpt = Checkpointer(str(tmp_path / 'ck'))
  ckpt.save(1, {'a': jnp.ones(2)})
  with pytest.raises(ValueError, match='does not match the current training state'):
    ckpt.restore({'a': jnp.ones(2), 'b': jnp.ones(1)})


def test_logger_writes_events_jsonl_and_progress(tmp_path):
  out = io.StringIO()
  log = MetricLogger(str(tmp_path), print_keys=['loss'], total_steps=10, stream=out)
  values = log.write(4, {'loss': jnp.float32(0.5), 'acc': np.array([1.0, 0.0])})
  log.close()
  assert values == {'loss': 0.5, 'acc': 0.5}
  assert out.getvalue().strip() == 'step 4/10 | loss 0.5'
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(tmp_path / 'tb'))
  line = json.loads(open(tmp_path / 'metrics.jsonl').read().splitlines()[0])
  assert line['step'] == 4 and line['acc'] == 0.5


def test_nan_guard_names_the_metric(tmp_path):
  log = MetricLogger(str(tmp_path), stream=io.StringIO())
  with pytest.raises(FloatingPointError, match='kl'):
    log.write(1, {'loss': 1.0, 'kl': float('nan')})
  log.close()


def test_format_progress_orders_keys():
  line = format_progress(3, None, {'b': 2.0, 'a': 123456.0}, keys=['b', 'a'])
  assert line == 'step 3 | b 2 | a 1.23e+05'
