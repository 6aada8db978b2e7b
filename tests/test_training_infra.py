"""Checkpointer and MetricLogger: atomic resume, mismatch errors, NaN guard, event files."""

import io
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.training import (
  Checkpointer,
  MetricLogger,
  Progress,
  format_duration,
  format_progress,
)


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
  line = out.getvalue().strip()
  assert line.startswith('step 4/10 | [########------------] 40% | ')
  assert line.endswith('elapsed | loss 0.5')  # No rate from a single line: no ETA yet.
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


class _FakeClock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_progress_eta_from_the_rate_after_the_first_line():
  clock = _FakeClock()
  progress = Progress(total=100, clock=clock)
  clock.now += 30.0  # Compile and the first 10 steps.
  assert progress.describe(10) == '[##------------------] 10% | 30s elapsed'
  clock.now += 20.0  # 10 steps at 2 s each: 80 steps left, 160 s.
  assert progress.describe(20) == '[####----------------] 20% | 50s elapsed | eta 2m40s'


def test_progress_eta_capped_by_the_time_budget():
  clock = _FakeClock()
  progress = Progress(total=1000, time_budget_s=120.0, clock=clock)
  progress.describe(1)
  clock.now += 60.0  # 1 step per 60 s would take hours; the budget ends it in 60 s.
  assert progress.describe(2) == '[##########----------] 50% | 1m00s elapsed | eta 1m00s'


def test_format_duration():
  assert [format_duration(s) for s in (0.4, 59, 187, 3725)] == ['0s', '59s', '3m07s',
                                                                  '1h02m']
