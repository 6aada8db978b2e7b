"""Reference-model training: the binary learns, resumes identically and exports a loadable
model; the closed-loop rollout (shapes, determinism, greedy, log replay) and CAT-K's
target selection.

Tiny everything: 16 object slots, 4000 map points, K = 16 tokens, hidden 32, one layer.
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import reference as reference_configs
from spacer_jax.data.generator import GeneratorConfig, generate_batch
from spacer_jax.models import reference_log_probs
from spacer_jax.models import train as train_lib
from spacer_jax.models import trainer as train_reference
from spacer_jax.models.checkpoint import load_reference
from spacer_jax.models.rollout import closest_to_log_among_top_k, rollout_with_selector
from spacer_jax.sim.config import EnvConfig
from spacer_jax.sim.dynamics import get_dynamics_model
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.tokens import TokenEnvironment, TokenVocabulary, save_vocabulary
from spacer_jax.tokens.builder import primitive_vocabulary
from spacer_jax.tokens.tokenize import tokenize
from spacer_jax.tokens.vocabulary import DEFAULT_BOX_SIZES
from spacer_jax.training import Checkpointer, runs

K = 16
GEN = GeneratorConfig(num_objects=16, num_roadgraph_points=4000)
FAST = {'xla_backend_optimization_level': 0}


def _tiny_vocab(k=K) -> TokenVocabulary:
  """Token 0 standing still plus k - 1 kinematic primitives per type (no clustering)."""
  return primitive_vocabulary(k)


@pytest.fixture(scope='module')
def vocab_path(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('vocab') / 'vocab.npz')
  save_vocabulary(path, _tiny_vocab(), {'source': 'test primitives'})
  return path


def _config(vocab_path, **train):
  config = reference_configs.get_config('tiny')
  config.tokens.vocabulary = vocab_path
  for k, v in train.items():
    setattr(config.train, k, v)
  return config


# ------------------------------------------------------------------ the binary
def test_binary_learns_resumes_identically_and_exports(tmp_path, vocab_path):
  straight = tmp_path / 'straight'
  final = train_reference.train_and_evaluate(_config(vocab_path), str(straight))
  losses = [json.loads(line)['loss'] for line in open(straight / 'metrics.jsonl')
            if '"loss"' in line]
  assert len(losses) == 8
  assert losses[-1] < losses[0] - 0.2, losses
  for key in ('nll', 'accuracy_top1', 'accuracy_top5', 'min_ade', 'collision_rate',
              'offroad_rate'):
    assert np.isfinite(final[key]), (key, final)
  assert 0 <= final['accuracy_top1'] <= final['accuracy_top5'] <= 1
  assert final['min_ade'] > 0
  # The same command on the finished run: nothing changes, its figures come back.
  files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in straight.rglob('*')
           if p.is_file()}
  assert train_reference.train_and_evaluate(_config(vocab_path), str(straight)) == final
  assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in straight.rglob('*')
          if p.is_file()} == files
  with pytest.raises(runs.RunConfigMismatch, match=r'train\.lr'):
    train_reference.train_and_evaluate(_config(vocab_path, lr=0.5), str(straight))

  # Killed after the checkpoint at step 4, then restarted: the same parameters.
  resumed = tmp_path / 'resumed'
  train_reference.train_and_evaluate(_config(vocab_path, stop_at=4), str(resumed))
  assert Checkpointer(str(resumed / 'checkpoints')).latest_step() == 4
  assert not (resumed / 'export').exists()
  train_reference.train_and_evaluate(_config(vocab_path), str(resumed))
  a = Checkpointer(str(straight / 'checkpoints')).restore(None)
  b = Checkpointer(str(resumed / 'checkpoints')).restore(None)
  assert a[0] == b[0] == 8
  for x, y in zip(jax.tree.leaves(a[1]), jax.tree.leaves(b[1])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert (straight / 'tb').is_dir()

  # The export loads and gives the trained model's log-probs.
  loaded = load_reference(str(straight))
  config = _config(vocab_path)
  assert loaded.config == train_reference.model_config(config, K)
  assert loaded.metadata['eval']['nll'] == pytest.approx(final['nll'])
  vocab = _tiny_vocab()
  inputs = train_lib.make_inputs(vocab, generate_batch([10_000_000], GEN), loaded.config)
  fn = jax.jit(functools.partial(reference_log_probs, loaded.config), compiler_options=FAST)
  np.testing.assert_allclose(np.asarray(fn(loaded.params, inputs)),
                             np.asarray(fn(a[1]['params'], inputs)), atol=1e-6)


def test_catk_fine_tunes_a_reference_on_tfrecord_files(tmp_path, vocab_path):
  """The data.files path (scenes read from WOMD tf.Example TFRecords, held-out records
  after the train ones) and CAT-K fine-tuning from a reference artifact."""
  from spacer_jax.data import generator, womd
  config = _config(vocab_path, num_steps=2, checkpoint_every=2)
  gen = GeneratorConfig(num_objects=config.data.num_objects,
                        num_roadgraph_points=config.data.num_roadgraph_points)
  files = [str(tmp_path / f'scenes-{i}.tfrecord') for i in range(2)]
  for i, path in enumerate(files):
    womd.write_records(path, [womd.state_to_example(generator.generate_scenario(
        100 + 3 * i + j, gen)).SerializeToString() for j in range(3)])
  config.data.files = str(tmp_path / 'scenes-*.tfrecord')
  teacher = train_reference.train_and_evaluate(config, str(tmp_path / 'teacher'))
  assert np.isfinite(teacher['nll'])

  catk = reference_configs.get_config('tiny,catk')
  catk.tokens.vocabulary = vocab_path
  catk.data.files = config.data.files
  catk.init_checkpoint = str(tmp_path / 'teacher')
  catk.train.num_steps = 2
  catk.eval.rollout_scenarios = 0
  final = train_reference.train_and_evaluate(catk, str(tmp_path / 'catk'))
  assert np.isfinite(final['nll'])
  tuned = load_reference(str(tmp_path / 'catk'))
  assert tuned.metadata['catk'] is True
  start = load_reference(str(tmp_path / 'teacher')).params
  moved = [float(jnp.max(jnp.abs(a - b))) for a, b in
           zip(jax.tree.leaves(tuned.params), jax.tree.leaves(start))]
  assert max(moved) > 0  # Fine-tuned from the teacher, not a fresh init.
  catk.init_checkpoint = ''
  with pytest.raises(ValueError, match='init_checkpoint'):
    train_reference.train_and_evaluate(catk, str(tmp_path / 'no_init'))


# ------------------------------------------------------------------ rollouts
@pytest.fixture(scope='module')
def rollout_setup():
  vocab = _tiny_vocab()
  config = train_reference.model_config(reference_configs.get_config('tiny'), K)
  scenarios = generate_batch([3, 4], GEN)
  env = TokenEnvironment(MultiAgentEnvironment(get_dynamics_model('delta_global'),
                                               EnvConfig(metrics=(), rewards={})), vocab)
  inputs = train_lib.make_inputs(vocab, scenarios, config)
  params = train_lib.init_train_state(
      config, train_lib.make_optimizer(1e-3, 10), inputs, jax.random.key(0)).params
  return vocab, config, scenarios, env, params


def _rollout(setup, top_k, num_steps=6, forced=False, feasible=True):
  vocab, config, _, env, _ = setup
  from spacer_jax.models.rollout import sampling_selector

  def run(params, state, rng, forced_tokens=None):
    return rollout_with_selector(config, params, vocab, env, state, rng,
                                 sampling_selector(top_k, 1.0), num_steps, forced_tokens,
                                 feasible=feasible)
  return jax.jit(run, compiler_options=FAST)


def test_rollout_shapes_and_determinism(rollout_setup):
  vocab, config, scenarios, env, params = rollout_setup
  run = _rollout(rollout_setup, top_k=4)
  a = run(params, scenarios, jax.random.key(1))
  b = run(params, scenarios, jax.random.key(1))
  c = run(params, scenarios, jax.random.key(2))
  n = scenarios.num_objects
  assert a.token_ids.shape == (2, n, 5 + 6)
  assert a.token_poses.shape == (2, n, 5 + 6 + 1, 3)
  assert a.log_probs.shape == (2, n, 6)
  np.testing.assert_array_equal(np.asarray(a.final_state.timestep), [22, 22])
  assert a.final_state.sim_trajectory.x.shape == (2, n, 91)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert np.any(np.asarray(a.token_ids) != np.asarray(c.token_ids))
  # Every controlled agent's sampled token is among its 4 most likely.
  ctrl = np.asarray(a.final_state.object_metadata.is_controlled)
  valid = np.asarray(a.token_valid[..., 5:]) & ctrl[..., None]
  assert valid.any()
  assert np.all(np.asarray(a.log_probs)[valid] <= 0)
  # The simulation moved on from the log only within the rollout window.
  sim_valid = np.asarray(a.final_state.sim_trajectory.valid)
  assert not sim_valid[..., 23:].any() and sim_valid[..., 11:23].any()


def test_rollout_top1_is_greedy(rollout_setup):
  vocab, config, scenarios, env, params = rollout_setup
  # The model's own argmax: the speed-change bound (tests/test_token_feasibility.py,
  # test_eval_sim_agents.py) would pick the best feasible token instead.
  run = _rollout(rollout_setup, top_k=1, feasible=False)
  a = run(params, scenarios, jax.random.key(1))
  b = run(params, scenarios, jax.random.key(7))
  np.testing.assert_array_equal(np.asarray(a.token_ids), np.asarray(b.token_ids))
  # Each executed token is the argmax of the teacher-forced pass over the rollout itself.
  from spacer_jax.models import build_reference_inputs
  state = env.reset(scenarios)
  inputs = build_reference_inputs(state, a.token_ids, a.token_poses, a.token_valid,
                                  config=config)
  lp = np.asarray(reference_log_probs(config, params, inputs))
  ctrl = np.asarray(state.object_metadata.is_controlled)
  ok = np.asarray(a.token_valid)[..., 5:] & ctrl[..., None]
  ok[..., 0] &= np.asarray(a.token_valid)[..., 4]  # position 4 fed the first choice
  argmax = lp[..., 4:-1, :].argmax(-1)
  assert ok.sum() > 10
  np.testing.assert_array_equal(argmax[ok], np.asarray(a.token_ids)[..., 5:][ok])


def test_rollout_with_log_tokens_reproduces_tokenisation(rollout_setup):
  vocab, config, scenarios, env, params = rollout_setup
  num_steps = 6
  run = _rollout(rollout_setup, top_k=1, num_steps=num_steps)
  tok = tokenize(vocab, scenarios.log_trajectory, scenarios.object_metadata.object_types,
                 start_step=10)
  out = run(params, scenarios, jax.random.key(0), tok.token_ids[..., :num_steps])
  full = np.asarray(tok.valid[..., :num_steps]).all(-1)
  assert full.sum() > 5
  sim = out.final_state.sim_trajectory
  steps = 10 + 2 * np.arange(1, num_steps + 1)
  got = np.stack([np.asarray(sim.x)[..., steps], np.asarray(sim.y)[..., steps]], -1)
  want = np.asarray(tok.poses)[..., 1:num_steps + 1, :2]
  np.testing.assert_allclose(got[full], want[full], atol=1e-3)
  np.testing.assert_allclose(np.asarray(out.token_poses)[..., 6:, :2][full], want[full],
                             atol=1e-3)


# ------------------------------------------------------------------ CAT-K
def test_catk_picks_closest_to_log_among_top_k(two_lane_state):
  # Vehicle tokens (0.2 s): still, 0.6 m/step, 1.0 m/step (car 0's logged speed), 1.5 m/step,
  # and 1.0 m/step turning left.
  def straight(d):
    return [[d, 0.0, 0.0], [2 * d, 0.0, 0.0]]
  turn = [[0.95, 0.1, 0.5], [1.7, 0.5, 1.0]]
  veh = np.array([straight(0.0), straight(0.6), straight(1.0), straight(1.5), turn])
  poses = np.stack([veh, veh * 0.3, veh * 0.5]).astype(np.float32)
  vocab = TokenVocabulary.from_poses(poses, DEFAULT_BOX_SIZES)
  env = MultiAgentEnvironment(get_dynamics_model('delta_global'), EnvConfig(metrics=()))
  state = env.reset(two_lane_state)
  n = state.num_objects
  # Token 2 (the exact match) is the least likely; the top 3 are 4, 3, 1.
  row = jnp.log(jnp.array([0.1, 0.15, 0.05, 0.3, 0.4]))
  log_probs = jnp.broadcast_to(row, (n, 5))
  ids, has_log = closest_to_log_among_top_k(vocab, log_probs, state, top_k=3)
  assert bool(has_log[0]) and not bool(has_log[5])  # slot 5 is padding
  assert int(ids[0]) == 1   # 0.6 m/step: 0.6 m mean corner error, vs 0.75 for 1.5 m/step
  assert int(ids[5]) == 4   # no log: the most likely token
  ids, _ = closest_to_log_among_top_k(vocab, log_probs, state, top_k=5)
  assert int(ids[0]) == 2   # with every token a candidate, the exact one
