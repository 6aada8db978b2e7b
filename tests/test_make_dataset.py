"""Dataset writer: sharding, resume after a kill, refused resumes, reading and simulating."""

import json
import os

import jax
import numpy as np
import pytest

from spacer_jax.apps import make_dataset as make_dataset_app
from spacer_jax.data import womd, writer
from spacer_jax.data.generator import generate_scenario
from spacer_jax.data.stats import DatasetSummary
from spacer_jax.sim import dynamics
from spacer_jax.sim.config import EnvConfig
from spacer_jax.sim.env import MultiAgentEnvironment

TINY = dict(num_scenarios=6, num_objects=16, num_roadgraph_points=2000, shard_size=2)


class _Killed(Exception):
  pass


def _files(out_dir, split='train'):
  folder = os.path.join(out_dir, split)
  return {n: open(os.path.join(folder, n), 'rb').read() for n in sorted(os.listdir(folder))}


@pytest.fixture(scope='module')
def full_run(tmp_path_factory):
  """An uninterrupted run of the tiny split."""
  out = str(tmp_path_factory.mktemp('full'))
  result = writer.write_split(writer.WriterConfig(out_dir=out, **TINY), progress=False)
  return out, result


def test_layout_and_manifest(full_run):
  out, result = full_run
  names = [f'synthetic-train.tfrecord-0000{i}-of-00003' for i in range(3)]
  assert list(_files(out)) == names
  assert result.shards_written == [0, 1, 2] and result.shards_reused == []
  manifest = writer.read_manifest(out, 'train')
  assert manifest['complete'] and manifest['num_shards'] == 3
  assert [e['num_scenarios'] for e in manifest['shards'].values()] == [2, 2, 2]
  assert manifest['config']['seed'] == 0
  assert manifest['config']['generator']['num_objects'] == 16
  assert not [n for n in os.listdir(os.path.join(out, '.incomplete'))
              if not n.endswith('.lock')]


def test_scenario_seeds_are_distinct_and_deterministic():
  seeds = {writer.scenario_seed(0, split, i) for split in writer.SPLITS for i in range(50)}
  assert len(seeds) == 150
  assert writer.scenario_seed(3, 'test', 7) == writer.scenario_seed(3, 'test', 7)
  assert writer.scenario_seed(3, 'test', 7) != writer.scenario_seed(4, 'test', 7)
  with pytest.raises(ValueError, match='split'):
    writer.scenario_seed(0, 'dev', 0)


def test_killed_run_resumes_with_missing_shards_only(full_run, tmp_path):
  out_full, _ = full_run
  out = str(tmp_path)
  config = writer.WriterConfig(out_dir=out, **TINY)

  def kill_after_first(shard):
    raise _Killed(shard)

  with pytest.raises(_Killed):
    writer.write_split(config, progress=False, on_shard=kill_after_first)
  assert writer.read_manifest(out, 'train')['complete'] is False
  first = os.path.join(out, 'train', writer.shard_name('train', 0, 3))
  before = os.stat(first)
  # What a kill can also leave: a temporary file, and a shard renamed into place whose
  # manifest update never happened (here with bad content: it must be replaced).
  open(os.path.join(out, '.incomplete', 'synthetic-train.tfrecord-00001.tmp'), 'wb').close()
  with open(os.path.join(out, 'train', writer.shard_name('train', 1, 3)), 'wb') as f:
    f.write(b'not a finished shard')

  written = []
  result = writer.write_split(config, progress=False, on_shard=written.append)
  assert written == [1, 2] and result.shards_reused == [0]
  after = os.stat(first)
  assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
  assert _files(out) == _files(out_full)
  assert os.listdir(os.path.join(out, '.incomplete')) == ['train.lock']
  assert (result.summary.to_json()
          == writer.manifest_summary(writer.read_manifest(out_full, 'train')).to_json())
  # A third run has nothing left to do.
  again = writer.write_split(config, progress=False)
  assert again.shards_written == [] and again.shards_reused == [0, 1, 2]


def test_resume_with_other_config_is_refused(full_run):
  out, _ = full_run
  with pytest.raises(ValueError, match=r'seed: written with 0, requested 1'):
    writer.write_split(writer.WriterConfig(out_dir=out, **{**TINY, 'seed': 1}),
                       progress=False)
  with pytest.raises(ValueError, match=r'generator\.num_objects: written with 16, requested'
                     r' 32'):
    writer.write_split(writer.WriterConfig(out_dir=out, **{**TINY, 'num_objects': 32}),
                       progress=False)
  with pytest.raises(ValueError, match='num_scenarios'):
    writer.write_split(writer.WriterConfig(out_dir=out, **{**TINY, 'num_scenarios': 7}),
                       progress=False)


def test_changed_finished_shard_is_an_error_deleted_one_is_rewritten(full_run, tmp_path):
  out_full, _ = full_run
  out = str(tmp_path)
  small = {**TINY, 'num_scenarios': 4}
  config = writer.WriterConfig(out_dir=out, **small)
  writer.write_split(config, progress=False)
  path = os.path.join(out, 'train', writer.shard_name('train', 1, 2))
  os.remove(path)
  result = writer.write_split(config, progress=False)
  assert result.shards_written == [1]
  with open(path, 'ab') as f:
    f.write(b'x')
  with pytest.raises(RuntimeError, match='Delete it'):
    writer.write_split(config, progress=False)


def test_bad_config_is_named():
  with pytest.raises(ValueError, match='num_objects'):
    writer.WriterConfig(out_dir='x', num_scenarios=1, num_objects=200)
  with pytest.raises(ValueError, match='split'):
    writer.WriterConfig(out_dir='x', num_scenarios=1, split='dev')
  with pytest.raises(ValueError, match='num_roadgraph_points'):
    writer.WriterConfig(out_dir='x', num_scenarios=1, num_roadgraph_points=40000)


def test_reader_gets_the_generated_states_and_the_simulator_steps_them(full_run):
  out, _ = full_run
  ds = womd.make_dataset(writer.split_pattern(out, 'train'), batch_size=3,
                         max_num_objects=16, max_num_rg_points=2000, num_hosts=1,
                         host_index=0)
  batches = list(ds)
  assert [b.log_trajectory.x.shape for b in batches] == [(3, 16, 91)] * 2
  gen = writer.WriterConfig(out_dir='', **TINY).generator_config()
  for i in (0, 4):
    expected = generate_scenario(writer.scenario_seed(0, 'train', i), gen)
    got = jax.tree_util.tree_map(lambda x, i=i: x[i % 3], batches[i // 3])
    for a, b in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(got)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  env = MultiAgentEnvironment(dynamics.get_dynamics_model('delta_global'),
                              EnvConfig(controlled_object='valid'))

  @jax.jit
  def reset_and_step(state):
    state = jax.vmap(env.reset)(state)
    return jax.vmap(lambda s: env.step(s, env.expert_action(s)))(state)

  state = reset_and_step(batches[0])
  np.testing.assert_array_equal(state.timestep, [11, 11, 11])
  sim, log = state.sim_trajectory, state.log_trajectory
  ok = np.asarray(sim.valid[:, :, 11] & log.valid[:, :, 11])
  assert ok.sum() > 20
  np.testing.assert_allclose(np.asarray(sim.x[:, :, 11])[ok], np.asarray(log.x[:, :, 11])[ok],
                             atol=1e-3)


def test_summary_matches_the_states_and_the_app_prints_it(full_run, capsys):
  out, _ = full_run
  gen = writer.WriterConfig(out_dir='', **TINY).generator_config()
  states = [s for _, s in writer.generate_states(range(6), 'train', 0, gen)]
  expected = DatasetSummary()
  for s in states:
    expected = expected.merge(DatasetSummary.of_state(s))
  got = writer.dataset_summaries(out)['train']
  assert got.to_json() == expected.to_json()
  assert got.num_scenarios == 6
  assert sum(got.valid_objects.values()) == sum(
      int(np.asarray(s.log_trajectory.valid).any(-1).sum()) for s in states)
  json.dumps(got.to_json())

  make_dataset_app.run(writer.WriterConfig(out_dir=out, **TINY), progress=False)
  text = capsys.readouterr().out
  assert 'wrote 0 shard(s)' in text and '3 shard(s) were already finished' in text
  assert '[train] complete' in text and 'scenarios: 6' in text and 'vehicle' in text
