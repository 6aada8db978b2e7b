"""Motion tokens: vocabulary builder, tokenize / execute / detokenize, token environment."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax import tokens
from spacer_jax.data.generator import GeneratorConfig, generate_scenario
from spacer_jax.models import default_vocabulary
from spacer_jax.sim import builders, geometry
from spacer_jax.sim.config import EnvConfig
from spacer_jax.sim.dynamics import StateDynamics
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.tokens import builder, vocabulary
from spacer_jax.tokens import tokenize as tokenize_lib
from spacer_jax.tokens.tokenize import tokenize

GEN = GeneratorConfig(num_objects=16, num_roadgraph_points=1000, log_off_map=True)
# Plain k-disk: at K = 16 a mirror-symmetric vocabulary has too few distinct turns to
# track these logs; the symmetric build is tested at K = 24 below.
SMALL = tokens.BuildConfig(num_tokens=16, max_segments=1000, max_candidates=100,
                           mirror_symmetric=False)
# Compiled once per shape and shared by the tests (eager scans are slow).
_tokenize = jax.jit(tokenize, static_argnames='start_step')
_detokenize = jax.jit(tokens.detokenize)


@pytest.fixture(scope='module')
def segments():
  # 64 objects a scene: enough moving agents of every speed for 16-24 tokens to cover.
  train = dataclasses.replace(GEN, num_objects=64)
  return tokens.extract_segments([generate_scenario(s, train) for s in range(3)], 2)


@pytest.fixture(scope='module')
def vocab_and_meta(segments):
  return tokens.build_vocabulary(segments, SMALL, {'kind': 'test'})


@pytest.fixture(scope='module')
def vocab(vocab_and_meta):
  return vocab_and_meta[0]


@pytest.fixture(scope='module')
def held_out():
  """A scenario the vocabulary never saw."""
  return generate_scenario(1000, GEN)


def _mean_corner_distance(a, b, length, width):
  """Mean over the trailing (S,) steps of box-corner distances; a, b (..., S, 3)."""
  ca = geometry.box_corners(a[..., 0], a[..., 1], length, width, a[..., 2])
  cb = geometry.box_corners(b[..., 0], b[..., 1], length, width, b[..., 2])
  return jnp.linalg.norm(ca - cb, axis=-1).mean((-1, -2))


# -- vocabulary --------------------------------------------------------------------


def test_vocabulary_shapes_and_token_zero(vocab):
  assert vocab.poses.shape == (3, 16, 2, 3)
  assert vocab.corners.shape == (3, 16, 2, 4, 2)
  assert vocab.box_sizes.shape == (3, 2)
  assert (vocab.num_tokens, vocab.steps_per_token) == (16, 2)
  np.testing.assert_array_equal(vocab.poses[:, 0], 0.0)
  # Tokens differ from each other (k-disk picks points farther apart than 0).
  flat = np.asarray(vocab.corners).reshape(3, 16, -1)
  for k in range(3):
    gaps = np.linalg.norm(flat[k][:, None] - flat[k][None], axis=-1) + np.eye(16) * 1e9
    assert gaps.min() > 1e-3
  pose = jnp.array([3.0, -2.0, 0.7])
  poses, vel = tokens.execute_token(vocab, pose, jnp.int32(1), jnp.int32(0))
  np.testing.assert_allclose(poses, jnp.broadcast_to(pose, (2, 3)), atol=1e-6)
  np.testing.assert_allclose(vel, 0.0, atol=1e-5)


def test_vocabulary_is_deterministic(segments, vocab):
  again, _ = tokens.build_vocabulary(segments, SMALL)
  for name in ('poses', 'corners', 'box_sizes'):
    np.testing.assert_array_equal(getattr(again, name), getattr(vocab, name))
  other, _ = tokens.build_vocabulary(
      segments, tokens.BuildConfig(**{**SMALL.__dict__, 'seed': 1}))
  assert not np.array_equal(other.poses, vocab.poses)


def test_vocabulary_is_its_own_mirror_image(segments, vocab, held_out):
  """Every token's left-right mirror is a token (exactly), the self-mirrored ones are
  exactly straight, and the symmetric vocabulary tracks held-out logs."""
  k = 24
  sym, meta = tokens.build_vocabulary(
      segments, dataclasses.replace(SMALL, num_tokens=k, mirror_symmetric=True))
  poses = np.asarray(sym.poses)
  for t in range(3):
    mirrored = builder.mirror_poses(poses[t])
    gap = np.abs(poses[t][None] - mirrored[:, None]).max((-1, -2))  # (K, K)
    np.testing.assert_allclose(gap.min(1), 0.0, atol=1e-6)
    self_mirror = gap[np.arange(k), np.arange(k)] < 1e-6
    assert self_mirror[0]  # standing still
    assert meta['types'][t]['num_axial_tokens'] == self_mirror.sum() - 1
    assert (k - self_mirror.sum()) % 2 == 0
    np.testing.assert_array_equal(poses[t][self_mirror][..., 1:], 0.0)  # straight
  assert meta['types'][0]['num_axial_tokens'] >= 1
  log, types = held_out.log_trajectory, held_out.object_metadata.object_types
  tok = _tokenize(sym, log, types)
  assert float(tok.error[np.asarray(tok.valid)].mean()) < 0.5
  # Plain k-disk (the module's vocabulary) picks asymmetric tokens.
  plain = np.asarray(vocab.poses)[0]
  gap = np.abs(plain[None] - builder.mirror_poses(plain)[:, None]).max((-1, -2))
  assert gap.min(1).max() > 1e-3


def test_vocabulary_metadata(vocab_and_meta, segments):
  _, meta = vocab_and_meta
  assert meta['format_version'] == vocabulary.FORMAT_VERSION
  assert (meta['num_tokens'], meta['steps_per_token']) == (16, 2)
  assert meta['token_seconds'] == pytest.approx(0.2)
  assert [t['type'] for t in meta['types']] == list(tokens.TYPE_NAMES)
  for t, seg in zip(meta['types'], segments):
    assert t['num_segments'] == len(seg.poses)
    assert t['tolerance_m'] > 0 and t['quantization_error_m'] >= 0
    # Every tiny test type is below min_segments, so it is flagged as primitive-padded.
    assert t['mostly_primitives'] == (len(seg.poses) < SMALL.min_segments)
  json.dumps(meta)  # Serialisable as is.


def test_type_without_data_uses_primitives(segments):
  empty = tokens.Segments(np.zeros((0, 2, 3), np.float32), np.zeros(0, np.float32),
                          np.zeros(0, np.float32))
  vocab, meta = tokens.build_vocabulary([segments[0], empty, empty], SMALL)
  assert meta['types'][1]['mostly_primitives']
  assert meta['types'][1]['num_primitive_segments'] > 0
  np.testing.assert_allclose(vocab.box_sizes[1], vocabulary.DEFAULT_BOX_SIZES[1])
  # Pedestrian primitives stay within the envelope (4 m/s, 1.5 m/s^2 for 0.2 s) and
  # include sideways motion relative to the heading.
  end = np.asarray(vocab.poses[1, :, -1, :2])
  assert np.linalg.norm(end, axis=-1).max() < 4.0 * 0.2 + 0.1
  assert (np.abs(end[:, 1]) > np.abs(end[:, 0]) + 0.1).any()


def test_build_config_and_segment_errors():
  with pytest.raises(ValueError, match='num_tokens'):
    tokens.BuildConfig(num_tokens=1)
  with pytest.raises(ValueError, match='coverage'):
    tokens.BuildConfig(coverage=0.0)
  bad = tokens.Segments(np.zeros((5, 3, 3), np.float32), np.ones(5), np.ones(5))
  with pytest.raises(ValueError, match=r'segments\[0\].poses'):
    tokens.build_vocabulary([bad] * 3, SMALL)


def test_agent_type_index():
  types = jnp.array([0, 1, 2, 3, 4])
  np.testing.assert_array_equal(tokens.agent_type_index(types), [0, 0, 1, 2, 0])


# -- artifact ----------------------------------------------------------------------


def test_save_load_round_trip(tmp_path, vocab_and_meta):
  vocab, meta = vocab_and_meta
  path = str(tmp_path / 'sub' / 'vocab.npz')
  tokens.save_vocabulary(path, vocab, meta)
  loaded = tokens.load_vocabulary(path)
  for name in ('poses', 'corners', 'box_sizes'):
    np.testing.assert_array_equal(getattr(loaded, name), getattr(vocab, name))
  assert (loaded.num_tokens, loaded.steps_per_token) == (16, 2)
  assert tokens.load_vocabulary_metadata(path)['types'] == meta['types']
  with open(path + '.json') as f:
    assert json.load(f)['num_tokens'] == 16
  assert not [p for p in os.listdir(tmp_path / 'sub') if p.startswith('.tmp')]


def test_load_errors(tmp_path, vocab_and_meta):
  vocab, meta = vocab_and_meta
  with pytest.raises(FileNotFoundError):
    tokens.load_vocabulary(str(tmp_path / 'missing.npz'))
  garbage = tmp_path / 'garbage.npz'
  garbage.write_bytes(b'not a zip file at all')
  with pytest.raises(tokens.VocabularyError, match='readable'):
    tokens.load_vocabulary(str(garbage))

  def write(name, **overrides):
    arrays = {'poses': np.asarray(vocab.poses), 'corners': np.asarray(vocab.corners),
              'box_sizes': np.asarray(vocab.box_sizes),
              'metadata_json': np.asarray(json.dumps(meta))}
    arrays.update(overrides)
    path = str(tmp_path / name)
    with open(path, 'wb') as f:
      np.savez(f, **arrays)
    return path

  with pytest.raises(tokens.VocabularyError, match='format_version'):
    tokens.load_vocabulary(write('v0.npz', metadata_json=np.asarray(
        json.dumps({**meta, 'format_version': 0}))))
  with pytest.raises(tokens.VocabularyError, match=r'poses has shape'):
    tokens.load_vocabulary(write('k.npz', metadata_json=np.asarray(
        json.dumps({**meta, 'num_tokens': 32}))))
  with pytest.raises(tokens.VocabularyError, match='lacks arrays'):
    arrays_path = str(tmp_path / 'partial.npz')
    np.savez(arrays_path, poses=np.asarray(vocab.poses))
    tokens.load_vocabulary(arrays_path)
  moving_zero = np.asarray(vocab.poses).copy()
  moving_zero[0, 0, 0, 0] = 1.0
  with pytest.raises(tokens.VocabularyError, match='standing still'):
    tokens.load_vocabulary(write('z.npz', poses=moving_zero))


def test_default_vocabulary_cache(tmp_path, monkeypatch, vocab_and_meta):
  vocab, meta = vocab_and_meta
  monkeypatch.setenv(vocabulary.CACHE_ENV_VAR, str(tmp_path))
  path = default_vocabulary.default_vocabulary_path(16, 2)
  assert path.startswith(str(tmp_path)) and 'k16_s2' in path
  calls = []

  def fake_build(seeds, generator_config, config):
    calls.append((list(seeds), config.num_tokens))
    return vocab, {**meta, 'build_config': dataclasses.asdict(config)}

  monkeypatch.setattr(default_vocabulary, 'build_vocabulary_from_generator', fake_build)
  first = default_vocabulary.get_or_build_default_vocabulary(16, 2)  # Absent: built and cached.
  assert os.path.exists(path) and len(calls) == 1 and calls[0][1] == 16
  second = default_vocabulary.get_or_build_default_vocabulary(16, 2)  # Cached: loaded.
  assert len(calls) == 1
  np.testing.assert_array_equal(first.poses, second.poses)
  with open(path, 'wb') as f:
    f.write(b'corrupt')
  default_vocabulary.get_or_build_default_vocabulary(16, 2)  # Corrupt: rebuilt.
  assert len(calls) == 2 and tokens.load_vocabulary(path).num_tokens == 16
  tokens.save_vocabulary(path, vocab, meta)  # Built with another config (SMALL): stale.
  default_vocabulary.get_or_build_default_vocabulary(16, 2)
  assert len(calls) == 3


# -- execute / tokenize / detokenize -----------------------------------------------


def test_execute_token_hand_computed():
  poses = np.zeros((3, 2, 2, 3), np.float32)
  poses[:, 1] = [[1.0, 0.0, 0.0], [2.0, 0.5, 0.1]]
  vocab = tokens.TokenVocabulary.from_poses(poses, np.ones((3, 2)))
  start = jnp.array([1.0, 2.0, np.pi / 2])
  out, vel = tokens.execute_token(vocab, start, jnp.int32(2), jnp.int32(1))
  np.testing.assert_allclose(out, [[1.0, 3.0, np.pi / 2], [0.5, 4.0, np.pi / 2 + 0.1]],
                             atol=1e-5)
  # Velocity = displacement / 0.1 s in the world frame.
  np.testing.assert_allclose(vel, [[0.0, 10.0], [-5.0, 10.0]], atol=1e-4)
  # Batch shape (2,) with different types and ids.
  out2, vel2 = tokens.execute_token(vocab, jnp.stack([start, start]), jnp.array([0, 1]),
                                    jnp.array([1, 0]))
  assert out2.shape == (2, 2, 3) and vel2.shape == (2, 2, 2)
  np.testing.assert_allclose(out2[0], out, atol=1e-6)
  np.testing.assert_allclose(out2[1], jnp.broadcast_to(start, (2, 3)), atol=1e-6)


def test_tokenize_round_trip_on_log(vocab, held_out):
  log, types = held_out.log_trajectory, held_out.object_metadata.object_types
  tok = _tokenize(vocab, log, types)
  assert tok.token_ids.shape == (16, 45) and tok.poses.shape == (16, 46, 3)
  type_index = tokens.agent_type_index(types)
  recon = _detokenize(vocab, tok.poses[:, 0], type_index, tok.token_ids, tok.valid,
                            tok.poses)  # (16, 91, 3)
  logged = jnp.stack([log.x, log.y, log.yaw], -1)
  length, width = log.length.max(-1)[:, None, None], log.width.max(-1)[:, None, None]
  recomputed = _mean_corner_distance(recon[:, 1:].reshape(16, 45, 2, 3),
                                     logged[:, 1:].reshape(16, 45, 2, 3), length, width)
  valid = np.asarray(tok.valid)
  assert valid.sum() > 200
  np.testing.assert_allclose(np.where(valid, recomputed, 0), tok.error, atol=2e-4)
  # Boundaries of valid tokens are the reconstruction's sub-step poses.
  np.testing.assert_allclose(np.where(valid[..., None], recon[:, 2::2], 0),
                             np.where(valid[..., None], tok.poses[:, 1:], 0), atol=1e-5)
  # Rolling from the reconstruction keeps errors bounded (no drift): even 16 tokens
  # track the log within a metre on average.
  assert float(tok.error[valid].mean()) < 1.0
  sums, counts = tokens.error_by_type(tok, types)
  assert int(counts.sum()) == valid.sum()
  np.testing.assert_allclose(float(sums.sum()), float(tok.error.sum()), rtol=1e-5)


_tokenize_noised = jax.jit(tokenize, static_argnames=('start_step', 'noise_top_k'))


def test_noised_tokenisation_drifts_and_targets_steer_back(vocab, held_out):
  log, types = held_out.log_trajectory, held_out.object_metadata.object_types
  exact = _tokenize(vocab, log, types)
  np.testing.assert_array_equal(exact.target_ids, exact.token_ids)
  # Probability 0: the same tokens as exact tokenisation, whatever the key.
  same = _tokenize_noised(vocab, log, types, noise_rng=jax.random.key(3), noise_top_k=4,
                          noise_prob=0.0)
  np.testing.assert_array_equal(same.token_ids, exact.token_ids)
  noised = _tokenize_noised(vocab, log, types, noise_rng=jax.random.key(3), noise_top_k=4,
                            noise_prob=1.0)
  valid = np.asarray(exact.valid)
  np.testing.assert_array_equal(noised.valid, exact.valid)
  ids, targets = np.asarray(noised.token_ids), np.asarray(noised.target_ids)
  assert (ids != targets)[valid].mean() > 0.5  # Most tokens are not the nearest one.
  # Every target is the nearest token from the drifted pose the noised sequence reached,
  # and every noised token is among the 4 nearest from there.
  type_index = tokens.agent_type_index(types)
  length = log.length.max(-1)
  width = log.width.max(-1)
  corners = tokenize_lib.token_corners(vocab, type_index, length, width)
  logged = jnp.stack([log.x, log.y, log.yaw], -1)
  for n, prev in zip(*np.nonzero(valid[:, 1:])):
    pos = prev + 1
    if not valid[n, prev]:
      continue  # Restarted from the log: nothing drifted yet.
    start = noised.poses[n, pos]
    target = logged[n, 2 * pos + 1:2 * pos + 3]
    dist = np.asarray(tokenize_lib._token_distances(corners[n], start, target, length[n],
                                                    width[n]))
    assert targets[n, pos] == int(np.argmin(dist))
    assert ids[n, pos] in np.argsort(dist)[:4]
  # Exact tokenisation tracks the log closer than the drifting one.
  assert float(noised.error[valid].mean()) > float(exact.error[valid].mean())
  with pytest.raises(ValueError, match='noise_top_k'):
    tokenize(vocab, log, types, noise_rng=jax.random.key(0), noise_top_k=99,
             noise_prob=0.5)


def _executed_trajectory(vocab, ids, start, types, length, width):
  recon = _detokenize(vocab, start, tokens.agent_type_index(types), ids)
  n, t = recon.shape[:2]
  return builders.trajectory_from_arrays(
      np.asarray(recon[..., 0]), np.asarray(recon[..., 1]), np.asarray(recon[..., 2]),
      np.ones((n, t), bool), length=length, width=width)


def test_executed_tokens_tokenize_back_exactly(vocab):
  rng = np.random.default_rng(0)
  ids = jnp.asarray(rng.integers(0, 16, (3, 12)), jnp.int32)
  start = jnp.asarray([[5.0, -3.0, 0.3], [-20.0, 4.0, 2.9], [0.0, 0.0, -1.4]])
  types = jnp.array([1, 2, 3])
  traj = _executed_trajectory(vocab, ids, start, types, length=np.asarray(
      vocab.box_sizes[:, 0]), width=np.asarray(vocab.box_sizes[:, 1]))
  tok = _tokenize(vocab, traj, types)
  np.testing.assert_array_equal(tok.token_ids, ids)
  assert bool(tok.valid.all())
  np.testing.assert_allclose(tok.error, 0.0, atol=1e-3)


def test_invalid_steps_restart_from_log(vocab, held_out):
  log, types = held_out.log_trajectory, held_out.object_metadata.object_types
  full = _tokenize(vocab, log, types)
  agent = int(np.argmax(np.asarray(log.valid).sum(-1)))  # Valid the whole log.
  assert bool(log.valid[agent].all())
  gap = log.valid.at[agent, 21].set(False)  # Step 21: inside token 10.
  tok = _tokenize(vocab, log.replace(valid=gap), types)
  valid = np.asarray(tok.valid[agent])
  assert not valid[10] and valid[:10].all() and valid[11:].all()
  np.testing.assert_array_equal(tok.token_ids[agent, :10], full.token_ids[agent, :10])
  # Token 11 restarts from the logged pose at step 22.
  logged_22 = jnp.stack([log.x[agent, 22], log.y[agent, 22], log.yaw[agent, 22]])
  np.testing.assert_allclose(tok.poses[agent, 11], logged_22, atol=1e-6)
  end = tokens.execute_token(vocab, logged_22, tokens.agent_type_index(types[agent]),
                             tok.token_ids[agent, 11])[0]
  target = jnp.stack([log.x[agent, 23:25], log.y[agent, 23:25], log.yaw[agent, 23:25]], -1)
  expected = _mean_corner_distance(end, target, log.length[agent, 0], log.width[agent, 0])
  np.testing.assert_allclose(tok.error[agent, 11], expected, atol=1e-5)
  # Other agents are unaffected.
  others = np.arange(16) != agent
  np.testing.assert_array_equal(tok.token_ids[others], full.token_ids[others])


def test_tokenize_batch_shapes_jit_and_errors(vocab, held_out):
  log, types = held_out.log_trajectory, held_out.object_metadata.object_types
  single = tokenize(vocab, log, types, start_step=10)
  assert single.token_ids.shape == (16, 40)
  batch = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), log)
  jitted = _tokenize(vocab, batch, jnp.stack([types, types]), start_step=10)
  assert jitted.poses.shape == (2, 16, 41, 3)
  for name in ('token_ids', 'valid', 'poses', 'error'):
    np.testing.assert_allclose(getattr(jitted, name)[1], getattr(single, name), atol=1e-5)
  with pytest.raises(ValueError, match='object_types'):
    tokenize(vocab, log, types[:3])
  with pytest.raises(ValueError, match='start_step'):
    tokenize(vocab, log, types, start_step=89)
  with pytest.raises(ValueError, match='start_pose'):
    tokens.detokenize(vocab, jnp.zeros((3, 3)), jnp.zeros(4, jnp.int32),
                      jnp.zeros((4, 5), jnp.int32))


# -- token environment -------------------------------------------------------------


@pytest.fixture(scope='module')
def token_env(vocab):
  config = EnvConfig(metrics=('overlap', 'log_divergence'), rewards={'overlap': -1.0},
                     build_road_edge_index=False)
  env = MultiAgentEnvironment(StateDynamics(), config)
  return tokens.TokenEnvironment(env, vocab)


@pytest.fixture(scope='module')
def jitted(token_env):
  """Compiled step / expert_tokens shared by the tests (one compile per batch shape)."""
  return jax.jit(token_env.step), jax.jit(token_env.expert_tokens)


def test_token_env_follows_logged_tokens(token_env, jitted, vocab, held_out):
  state = token_env.reset(held_out)
  tok = _tokenize(vocab, held_out.log_trajectory, held_out.object_metadata.object_types,
                  start_step=10)  # Boundary 0 = the reset step.
  controlled = np.asarray(state.object_metadata.is_controlled)
  step, expert = jitted
  num_steps = 6
  divergence = []
  for i in range(num_steps):
    ids, ids_valid = expert(state)
    # From the reconstruction, the env's expert token is the tokeniser's choice.
    both = np.asarray(ids_valid & tok.valid[:, i]) & controlled
    np.testing.assert_array_equal(np.asarray(ids)[both], np.asarray(tok.token_ids[:, i])[both])
    state, metrics = step(state, jnp.where(tok.valid[:, i], tok.token_ids[:, i], -1))
    assert metrics['overlap'].value.shape == (2, 16)
    assert metrics['log_divergence'].valid.shape == (2, 16)
    divergence.append(np.asarray(metrics['log_divergence'].value))
  assert int(state.timestep) == 10 + 2 * num_steps
  sim = state.sim_trajectory
  end = 10 + 2 * num_steps
  keep = controlled & np.asarray(tok.valid[:, :num_steps].all(-1))
  assert keep.sum() >= 5
  sim_pose = jnp.stack([sim.x[:, end], sim.y[:, end], sim.yaw[:, end]], -1)
  np.testing.assert_allclose(np.asarray(sim_pose)[keep], np.asarray(tok.poses[:, num_steps])[keep],
                             atol=1e-4)
  # Tracks the log within the tokenisation error: a box centre is never farther from the
  # log than the mean of its corners, and one sub-step's corner distance is at most S
  # times the token's mean over its S sub-steps.
  divergence = np.stack(divergence)[:, :, keep]  # (steps, S, objects)
  bound = 2 * np.asarray(tok.error[:, :num_steps]).T[:, None, keep]
  assert (divergence <= bound + 1e-4).all()
  assert divergence.max() > 0  # The bound is not vacuous: the log is not reproduced exactly.
  reward = token_env.reward(state, metrics)
  assert reward.shape == (2, 16)
  np.testing.assert_allclose(reward, -metrics['overlap'].value * controlled, atol=1e-6)


def test_token_env_batch_and_jit(token_env, jitted, held_out):
  step, expert = jitted
  state = token_env.reset(held_out)
  ids, _ = expert(state)
  eager_state, eager_metrics = token_env.step(state, ids)  # No jit.
  batch_state = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), state)
  batch_ids = jnp.stack([ids, jnp.zeros_like(ids)])
  jit_state, jit_metrics = step(batch_state, batch_ids)
  assert jit_metrics['overlap'].value.shape == (2, 2, 16)
  np.testing.assert_allclose(jit_state.sim_trajectory.x[0], eager_state.sim_trajectory.x,
                             atol=1e-5)
  np.testing.assert_allclose(jit_metrics['log_divergence'].value[0],
                             eager_metrics['log_divergence'].value, atol=1e-5)
  # Token 0 everywhere: controlled objects stand still with zero velocity.
  controlled = np.asarray(state.object_metadata.is_controlled)
  t = int(state.timestep)
  still = jit_state.sim_trajectory
  np.testing.assert_allclose(np.asarray(still.x[1, :, t + 2])[controlled],
                             np.asarray(state.sim_trajectory.x[:, t])[controlled], atol=1e-6)
  np.testing.assert_allclose(np.asarray(still.vel_x[1, :, t + 1:t + 3])[controlled], 0.0,
                             atol=1e-6)
  # A negative id is no action: the object becomes invalid.
  no_action = jnp.where(jnp.arange(16) == int(np.argmax(controlled)), -1, ids)
  after, _ = step(state, no_action)
  assert not bool(after.sim_trajectory.valid[int(np.argmax(controlled)), t + 1])
  with pytest.raises(ValueError, match='token_ids'):
    token_env.step(state, ids[:3])
  assert not bool(token_env.done(state))
