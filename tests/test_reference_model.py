"""Reference transformer: sizes, map features, the teacher-forced query (causality,
agreement with step-by-step decoding, per-type heads, invariances) and learning."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from spacer_jax import models
from spacer_jax.models import features as feat
from spacer_jax.models.config import ReferenceConfig

B, N, L, M, K = 2, 6, 7, 32, 16
SEGMENT_POINTS = 11

# The tests' programs are tiny and run a few times: compiling them without backend
# optimisation halves the suite's time.
fast_jit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})

TINY = ReferenceConfig(hidden=32, num_heads=4, map_layers=1, agent_layers=1, num_tokens=K,
                       num_map_segments=M, k_map_self=8, k_map=8, k_agent=3,
                       temporal_window=4, dropout=0.0, rel_dim=16)


def _synthetic_inputs(seed=0, batch=(B,), num_agents=N, length=L):
  """Random but well-spread scenes: segments in a 100 m box, agents on random walks."""
  r = np.random.default_rng(seed)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  seg = feat.MapSegments(
      xy=f32(r.uniform(-50, 50, (*batch, M, 2))),
      yaw=f32(r.uniform(-np.pi, np.pi, (*batch, M))),
      start=f32(r.uniform(-50, 50, (*batch, M, 2))),
      end=f32(r.uniform(-50, 50, (*batch, M, 2))),
      length=f32(r.uniform(1, 5, (*batch, M))),
      types=jnp.asarray(r.integers(-1, 20, (*batch, M)), jnp.int32),
      points=f32(r.normal(size=(*batch, M, SEGMENT_POINTS, 2))),
      points_valid=jnp.asarray(r.random((*batch, M, SEGMENT_POINTS)) < 0.9),
      valid=jnp.asarray(np.broadcast_to(np.arange(M) < M - 3, (*batch, M))))
  start = np.concatenate([r.uniform(-30, 30, (*batch, num_agents, 1, 2)),
                          r.uniform(-np.pi, np.pi, (*batch, num_agents, 1, 1))], axis=-1)
  steps = np.concatenate([r.uniform(0, 2, (*batch, num_agents, length, 1)),
                          r.normal(0, 0.2, (*batch, num_agents, length, 1)),
                          r.normal(0, 0.1, (*batch, num_agents, length, 1))], axis=-1)
  poses = np.cumsum(np.concatenate([start, steps], axis=-2), axis=-2)
  token_valid = np.ones((*batch, num_agents, length), bool)
  token_valid[..., 1, :2] = False         # agent 1 appears late
  token_valid[..., 2, length - 2:] = False  # agent 2 disappears early
  agent_valid = np.ones((*batch, num_agents), bool)
  agent_valid[..., -1] = False            # the last slot is padding
  return models.ReferenceInputs(
      map_segments=seg,
      agent_type=jnp.asarray(np.arange(num_agents) % 3 * np.ones((*batch, 1), int),
                             jnp.int32),
      agent_size=f32(r.uniform(0.5, 5, (*batch, num_agents, 2))),
      agent_valid=jnp.asarray(agent_valid),
      token_ids=jnp.asarray(r.integers(0, K, (*batch, num_agents, length)), jnp.int32),
      token_poses=f32(poses),
      token_valid=jnp.asarray(token_valid))


@pytest.fixture(scope='module')
def tiny():
  inputs = _synthetic_inputs()
  params = models.init_reference(TINY, jax.random.key(0), inputs)
  log_probs_fn = fast_jit(functools.partial(models.reference_log_probs, TINY))
  return inputs, params, log_probs_fn, log_probs_fn(params, inputs)


def _valid(inputs):
  return np.asarray(models.position_valid(inputs))


# ------------------------------------------------------------------ configs, sizes
def test_param_counts_near_paper_sizes():
  counts = models.parameter_counts()
  print(counts)
  for size, target in [('nano', 0.3e6), ('mini', 1.0e6), ('base', 3.2e6)]:
    assert abs(counts[size] - target) / target < 0.3, (size, counts[size])


def test_config_errors():
  with pytest.raises(ValueError, match='divisible'):
    ReferenceConfig(hidden=30, num_heads=4)
  with pytest.raises(ValueError, match='k_map'):
    ReferenceConfig(k_map=0)
  with pytest.raises(ValueError, match='unknown reference model size'):
    models.reference_config('huge')
  assert models.reference_config('base').hidden == 128
  assert models.reference_config('base', num_tokens=100).num_tokens == 100


# ---------------------------------------------------------------------- features
def test_relative_pose_features_known_answer():
  query = jnp.array([1.0, 1.0, np.pi / 2])
  keys = jnp.array([[1.0, 3.0, np.pi], [0.0, 1.0, np.pi / 2], [1.0, 1.0, 0.0]])
  got = np.asarray(feat.relative_pose_features(query, keys))
  want = np.array([[2.0, 0.0, 1.0, 0.0, 2.0],    # 2 m ahead, turned left 90 degrees
                   [0.0, 1.0, 0.0, 1.0, 1.0],    # 1 m to the left, same heading
                   [0.0, 0.0, -1.0, 0.0, 0.0]])  # same place, turned right 90 degrees
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_relative_motion_features_known_answer():
  # The query drives north at 2 m per token; keys 10 m ahead of it.
  q_start, q_end = jnp.array([0.0, -2.0, np.pi / 2]), jnp.array([0.0, 0.0, np.pi / 2])
  stopped = (jnp.array([0.0, 10.0, np.pi / 2]), jnp.array([0.0, 10.0, np.pi / 2]))
  same = (jnp.array([0.0, 8.0, np.pi / 2]), jnp.array([0.0, 10.0, np.pi / 2]))
  away = (jnp.array([0.0, 6.0, np.pi / 2]), jnp.array([0.0, 10.0, np.pi / 2]))
  got = np.stack([np.asarray(feat.relative_motion_features(q_start, q_end, *k))
                  for k in (stopped, same, away)])
  scale = feat.MOTION_SCALE
  want = np.array([[-2.0 / scale, 0.0, 2.0 / scale, 0.2],   # closing at 2 m per token
                   [0.0, 0.0, 0.0, 0.0],                     # same speed
                   [2.0 / scale, 0.0, -2.0 / scale, -0.2]])  # pulling away
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_motion_features_keep_the_model_consistent():
  """With relative motion in the agent->agent keys: step-by-step decoding still equals
  the teacher-forced pass, the scene's placement still does not matter, and a loaded
  model that gains the features (zero weights) predicts exactly what it did."""
  from spacer_jax.models.train import add_motion_features
  inputs = _synthetic_inputs(seed=1)
  params = models.init_reference(TINY, jax.random.key(1), inputs)
  config, widened = add_motion_features(TINY, params)
  assert config.agent_motion_features
  base = np.asarray(models.reference_log_probs(TINY, params, inputs))
  np.testing.assert_allclose(
      np.asarray(models.reference_log_probs(config, widened, inputs)), base, atol=1e-5)
  trained = models.init_reference(config, jax.random.key(2), inputs)
  full = np.asarray(models.reference_log_probs(config, trained, inputs))
  stepped = np.asarray(models.next_token_log_probs_incremental(config, trained, inputs))
  np.testing.assert_allclose(stepped, full, atol=2e-5)
  # Slowing agent 0 down (its last token starts closer to where it ends) changes what
  # the others predict through the motion inputs, not only through agent 0's embedding:
  # the same change with the motion weights zeroed moves them less.
  poses = np.array(inputs.token_poses)
  poses[:, 0, -2, :2] = poses[:, 0, -1, :2]   # agent 0 stood still over its last token
  slowed = inputs.replace(token_poses=jnp.asarray(poses))
  moved = np.abs(np.asarray(models.reference_log_probs(config, trained, slowed))
                 - full)[:, 3, -1].max()
  kernel = trained['params']['agent_rel']['in']['kernel']
  no_motion = jax.tree.map(lambda a: a, trained)
  no_motion['params']['agent_rel']['in']['kernel'] = kernel.at[5:].set(0.0)
  ref = np.asarray(models.reference_log_probs(config, no_motion, inputs))
  moved_without = np.abs(np.asarray(models.reference_log_probs(config, no_motion, slowed))
                         - ref)[:, 3, -1].max()
  assert moved > moved_without + 1e-4, (moved, moved_without)
  with pytest.raises(ValueError, match='already'):
    add_motion_features(config, widened)


def _reference_segments(rg, center, step, count):
  """Numpy chopping of polylines into segments; start points of the nearest ``count``."""
  x, y, ids, valid = (np.asarray(a) for a in (rg.x, rg.y, rg.ids, rg.valid))
  runs, i = [], 0
  while i < len(x):
    if not valid[i]:
      i += 1
      continue
    j = i
    while j + 1 < len(x) and valid[j + 1] and ids[j + 1] == ids[i]:
      j += 1
    runs.append((i, j))
    i = j + 1
  segs = []
  for a, b in runs:
    starts = range(a, b, step) if b > a else [a]
    for s in starts:
      e = min(s + step, b)
      d = np.min(np.hypot(x[s:e + 1] - center[0], y[s:e + 1] - center[1]))
      segs.append((d, s, e))
  segs.sort()
  return segs[:count]


def test_map_segments_match_numpy_reference(two_lane_state):
  rg = two_lane_state.roadgraph_points
  center = np.array([37.0, 1.0], np.float32)
  seg = fast_jit(feat.map_segments, static_argnums=(2, 3))(rg, jnp.asarray(center), 24, 10)
  want = _reference_segments(rg, center, 10, 24)
  assert int(seg.valid.sum()) == 24
  x, y = np.asarray(rg.x), np.asarray(rg.y)
  got_starts = sorted(map(tuple, np.round(np.asarray(seg.start), 3)))
  want_starts = sorted((round(float(x[s]), 3), round(float(y[s]), 3)) for _, s, _ in want)
  assert got_starts == want_starts
  got_ends = sorted(map(tuple, np.round(np.asarray(seg.end), 3)))
  want_ends = sorted((round(float(x[e]), 3), round(float(y[e]), 3)) for _, _, e in want)
  assert got_ends == want_ends
  length = np.asarray(seg.length)
  assert np.all((length > 0) & (length <= 5.0 + 1e-3)), length
  # Lanes 3/4 and edge 1 run towards +x; edge 2 is stored from x = 200 back to 0.
  types, yaw = np.asarray(seg.types), np.asarray(seg.yaw)
  reversed_edge = (np.asarray(seg.xy)[:, 1] > 3.0) & (types == 15)
  np.testing.assert_allclose(np.cos(yaw), np.where(reversed_edge, -1.0, 1.0), atol=1e-4)
  # Local points: first point at -length/2 on the x axis, last at +length/2.
  pts, pv = np.asarray(seg.points), np.asarray(seg.points_valid)
  np.testing.assert_allclose(pts[:, 0], np.stack([-length / 2, 0 * length], -1), atol=1e-3)
  assert np.all(pts[~pv] == 0)


def test_map_segments_pads_and_batches(two_lane_state):
  rg = jax.tree.map(lambda a: jnp.stack([a, a]), two_lane_state.roadgraph_points)
  centers = jnp.array([[0.0, 0.0], [150.0, 0.0]])
  seg = fast_jit(feat.map_segments, static_argnums=(2, 3))(rg, centers, 200, 10)
  assert seg.valid.shape == (2, 200) and seg.points.shape == (2, 200, 11, 2)
  # 4 polylines of 200 m (401 points) make 40 segments each.
  np.testing.assert_array_equal(np.asarray(seg.valid.sum(-1)), [160, 160])
  assert np.all(np.asarray(seg.types)[~np.asarray(seg.valid)] == -1)
  near = np.asarray(seg.xy)[:, :4, 0]
  assert np.all(np.abs(near[0]) < 10) and np.all(np.abs(near[1] - 150) < 10)
  with pytest.raises(ValueError, match='center_xy'):
    feat.map_segments(rg, jnp.zeros((2,)), 10)


def test_map_is_kept_around_every_agent_not_only_the_sdc(two_lane_state):
  # Objects at the current step (10): the SDC at x = 15, one car at x = 28 and one 150 m
  # down the road. Even 12 segments (of 160) cover the road under each of them.
  config = ReferenceConfig(num_map_segments=12)
  n = two_lane_state.num_objects
  build = fast_jit(functools.partial(models.build_reference_inputs, config=config))
  inputs = build(two_lane_state, jnp.zeros((n, 5), jnp.int32), jnp.zeros((n, 6, 3)),
                 jnp.ones((n, 5), bool))
  seg_x = np.asarray(inputs.map_segments.xy)[np.asarray(inputs.map_segments.valid), 0]
  for car_x in (15.0, 28.0, 150.0):
    assert np.min(np.abs(seg_x - car_x)) < 5.0, (car_x, np.sort(seg_x))
  xy, valid = models.map_anchors(two_lane_state)
  np.testing.assert_allclose(np.asarray(xy)[:3, 0], [15.0, 28.0, 150.0], atol=1e-5)
  np.testing.assert_array_equal(np.asarray(valid)[:4], [True, True, True, False])


def test_build_reference_inputs(two_lane_state):
  n = two_lane_state.num_objects
  ids = jnp.zeros((n, 5), jnp.int32)
  poses = jnp.zeros((n, 6, 3))
  valid = jnp.ones((n, 5), bool)
  config = ReferenceConfig(num_map_segments=16)
  build = fast_jit(functools.partial(models.build_reference_inputs, config=config))
  inputs = build(two_lane_state, ids, poses, valid)
  assert inputs.map_segments.valid.shape == (16,)
  assert bool(inputs.map_segments.valid.all())
  np.testing.assert_array_equal(np.asarray(inputs.agent_valid)[:4], [True] * 3 + [False])
  np.testing.assert_allclose(np.asarray(inputs.agent_size)[:3],
                             [[4.5, 1.9], [4.8, 2.0], [4.2, 1.8]], atol=1e-6)
  assert np.all(np.asarray(inputs.agent_type) == 0)
  # The map is centred on the SDC (object 0 at x = 5, y = -1.75 at step 0).
  np.testing.assert_allclose(np.asarray(fast_jit(models.scene_center)(two_lane_state)),
                             [5.0, -1.75])
  batched = jax.tree.map(lambda a: jnp.stack([a, a]), two_lane_state)
  stack = lambda a: jnp.stack([a, a])
  out = jax.eval_shape(build, batched, stack(ids), stack(poses), stack(valid))
  assert out.token_poses.shape == (2, n, 6, 3) and out.map_segments.xy.shape == (2, 16, 2)
  with pytest.raises(ValueError, match='token_poses'):
    models.build_reference_inputs(two_lane_state, ids, poses[:, :5], valid, config=config)
  with pytest.raises(ValueError, match='token_ids'):
    models.build_reference_inputs(two_lane_state, ids[:3], poses, valid, config=config)


# ------------------------------------------------------------- the forward pass
def test_output_shape_and_normalisation(tiny):
  inputs, _, _, log_probs = tiny
  assert log_probs.shape == (B, N, L, K) and log_probs.dtype == jnp.float32
  lp = np.asarray(log_probs)
  assert np.all(np.isfinite(lp))
  np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, atol=1e-5)
  invalid = ~_valid(inputs)
  assert invalid.any()
  np.testing.assert_allclose(lp[invalid], -np.log(K), atol=1e-6)
  # Not uniform where valid: the model actually uses its inputs.
  assert np.std(lp[~invalid]) > 1e-3


def test_bad_inputs_are_rejected(tiny):
  inputs, params, _, _ = tiny
  bad = inputs.replace(token_poses=inputs.token_poses[..., 1:, :])
  with pytest.raises(ValueError, match='token_poses'):
    models.reference_log_probs(TINY, params, bad)
  with pytest.raises(ValueError, match='agent_type.*dtype'):
    models.reference_log_probs(TINY, params, inputs.replace(
        agent_type=inputs.agent_type.astype(jnp.float32)))
  with pytest.raises(TypeError, match='ReferenceModel or ReferenceConfig'):
    models.reference_log_probs('base', params, inputs)


@pytest.mark.parametrize('batch', [(), (2, 1)])
def test_batch_shapes(tiny, batch):
  _, params, _, _ = tiny
  inputs = _synthetic_inputs(seed=1, batch=batch)
  out = jax.eval_shape(functools.partial(models.reference_log_probs, TINY), params, inputs)
  assert out.shape == (*batch, N, L, K)


def test_dropout_path_traces(tiny):
  inputs, params, _, _ = tiny
  loss = functools.partial(models.behaviour_cloning_loss, TINY, rng=jax.random.key(3))
  out, metrics = jax.eval_shape(loss, params, inputs)
  assert out.shape == () and metrics['accuracy_top5'].shape == ()
  with pytest.raises(ValueError, match='rng'):
    jax.eval_shape(functools.partial(models.reference_log_probs, TINY, deterministic=False),
                   params, inputs)


@pytest.mark.parametrize('cut', [2, 5])
def test_causal_masking(tiny, cut):
  """Changing any agent's tokens and poses after position ``cut`` leaves outputs at
  positions ``<= cut`` unchanged."""
  inputs, params, log_probs_fn, base = tiny
  r = np.random.default_rng(cut)
  ids = np.array(inputs.token_ids)
  ids[..., cut + 1:] = r.integers(0, K, ids[..., cut + 1:].shape)
  poses = np.array(inputs.token_poses)
  poses[..., cut + 2:, :] += r.normal(0, 3.0, poses[..., cut + 2:, :].shape)
  valid = np.array(inputs.token_valid)
  valid[..., 0, cut + 1:] = ~valid[..., 0, cut + 1:]
  changed = log_probs_fn(params, inputs.replace(
      token_ids=jnp.asarray(ids), token_poses=jnp.asarray(poses),
      token_valid=jnp.asarray(valid)))
  np.testing.assert_array_equal(np.asarray(changed)[..., :cut + 1, :],
                                np.asarray(base)[..., :cut + 1, :])
  later = _valid(inputs)[..., cut + 1:]
  assert np.abs(np.asarray(changed)[..., cut + 1:, :] - np.asarray(base)[..., cut + 1:, :]
                ).max(-1)[later].min() > 1e-6


def test_teacher_forced_equals_step_by_step(tiny):
  inputs, params, _, base = tiny
  step_fn = fast_jit(functools.partial(models.next_token_log_probs_incremental, TINY))
  stepped = step_fn(params, inputs)
  assert stepped.shape == base.shape
  np.testing.assert_allclose(np.asarray(stepped), np.asarray(base), atol=2e-5)


def test_per_type_heads(tiny):
  inputs, params, log_probs_fn, base = tiny
  valid = _valid(inputs)
  types = np.asarray(inputs.agent_type)
  heads = params['params']['heads']
  assert heads['out_kernel'].shape == (3, TINY.hidden, K)
  assert heads['hidden_kernel'].shape == (3, TINY.hidden, TINY.hidden)
  # Perturbing the cyclist head moves exactly the cyclists' outputs.
  bumped = dict(heads, out_bias=heads['out_bias'].at[2].add(
      jnp.linspace(-1.0, 1.0, K)))
  new_params = {'params': dict(params['params'], heads=bumped)}
  out = np.asarray(log_probs_fn(new_params, inputs))
  moved = np.abs(out - np.asarray(base)).max(-1)
  cyclist = (types == 2)[..., None] & valid
  assert moved[cyclist].min() > 1e-3
  assert moved[(types != 2)[..., None] & valid].max() == 0.0
  # Changing an agent's type changes its logits (another vocabulary and head).
  flipped = inputs.replace(agent_type=inputs.agent_type.at[:, 0].set(1))
  out = np.asarray(log_probs_fn(params, flipped))
  assert np.abs(out[:, 0] - np.asarray(base)[:, 0]).max(-1)[valid[:, 0]].min() > 1e-4


def test_invalid_agents_and_positions_do_not_leak(tiny):
  inputs, params, log_probs_fn, base = tiny
  r = np.random.default_rng(3)
  valid = _valid(inputs)
  ids = np.array(inputs.token_ids)
  poses = np.array(inputs.token_poses)
  # The padded agent (last slot) and agent 1's invalid first positions get garbage that
  # would be very close to everyone.
  ids[..., -1, :] = r.integers(0, K, ids[..., -1, :].shape)
  poses[..., -1, :, :] = poses[..., 0, :, :] + 0.5
  ids[..., 1, :2] = (ids[..., 1, :2] + 1) % K
  poses[..., 1, :2, :] = poses[..., 0, :2, :] + 0.3  # boundary 2 starts a valid token
  changed = inputs.replace(token_ids=jnp.asarray(ids), token_poses=jnp.asarray(poses),
                           agent_type=inputs.agent_type.at[:, -1].set(2),
                           agent_size=inputs.agent_size.at[:, -1].set(9.0))
  out = np.asarray(log_probs_fn(params, changed))
  np.testing.assert_allclose(out[valid], np.asarray(base)[valid], atol=1e-6)


def test_permutation_equivariance(tiny):
  inputs, params, log_probs_fn, base = tiny
  perm = np.array([3, 0, 5, 1, 4, 2])
  permuted = inputs.replace(
      agent_type=inputs.agent_type[:, perm], agent_size=inputs.agent_size[:, perm],
      agent_valid=inputs.agent_valid[:, perm], token_ids=inputs.token_ids[:, perm],
      token_poses=inputs.token_poses[:, perm], token_valid=inputs.token_valid[:, perm])
  out = np.asarray(log_probs_fn(params, permuted))
  np.testing.assert_allclose(out, np.asarray(base)[:, perm], atol=1e-5)


def test_invariant_to_moving_and_rotating_the_scene(tiny):
  inputs, params, log_probs_fn, base = tiny
  angle, shift = 0.7, jnp.array([120.0, -40.0])
  move = lambda p: jnp.stack([jnp.cos(angle) * p[..., 0] - jnp.sin(angle) * p[..., 1],
                              jnp.sin(angle) * p[..., 0] + jnp.cos(angle) * p[..., 1]],
                             -1) + shift
  seg = inputs.map_segments
  seg = seg.replace(xy=move(seg.xy), start=move(seg.start), end=move(seg.end),
                    yaw=seg.yaw + angle)
  poses = inputs.token_poses
  poses = jnp.concatenate([move(poses[..., :2]), poses[..., 2:] + angle], -1)
  out = np.asarray(log_probs_fn(params, inputs.replace(map_segments=seg,
                                                       token_poses=poses)))
  np.testing.assert_allclose(out, np.asarray(base), atol=2e-4)


# ------------------------------------------------------------------------ losses
def test_next_token_loss_hand_computed():
  probs = np.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]], np.float32)
  log_probs = jnp.log(jnp.asarray(probs))[None]          # (N=1, L=3, K=3)
  ids = jnp.array([[0, 1, 2]])
  valid = jnp.array([[True, True, False]])
  # Only the target at position 1 (token 1 under output 0) counts: both ends valid.
  loss, metrics = models.next_token_loss(log_probs, ids, valid, label_smoothing=0.3)
  want = 0.7 * -np.log(0.25) + 0.3 * -np.mean(np.log(probs[0]))
  np.testing.assert_allclose(float(loss), want, rtol=1e-6)
  np.testing.assert_allclose(float(metrics['nll']), -np.log(0.25), rtol=1e-6)
  assert float(metrics['accuracy_top1']) == 0.0 and float(metrics['num_targets']) == 1.0
  loss, metrics = models.next_token_loss(log_probs, ids, jnp.ones((1, 3), bool),
                                         label_smoothing=0.0)
  np.testing.assert_allclose(float(loss), -(np.log(0.25) + np.log(0.7)) / 2, rtol=1e-6)
  assert float(metrics['accuracy_top1']) == 0.5 and float(metrics['accuracy_top5']) == 1.0
  weights = jnp.zeros((1,))
  _, metrics = models.next_token_loss(log_probs, ids, valid, weights=weights)
  assert float(metrics['num_targets']) == 0.0
  with pytest.raises(ValueError, match='weights'):
    models.next_token_loss(log_probs, ids, valid, weights=jnp.ones((2,)))


def test_tiny_model_learns_tiny_dataset(tiny):
  """Next token = (token + 1 + type) mod K, poses irrelevant: loss must fall fast."""
  inputs, params, _, _ = tiny
  first = np.random.default_rng(0).integers(0, K, (B, N, 1))
  steps = (1 + np.asarray(inputs.agent_type))[..., None] * np.arange(L)
  inputs = inputs.replace(token_ids=jnp.asarray((first + steps) % K, jnp.int32))
  # One flat parameter vector keeps the optimiser to a few fused ops (fast to compile).
  flat, unravel = ravel_pytree(params)
  opt = optax.adamw(3e-3, weight_decay=1e-4)

  def loss_fn(p):
    return models.behaviour_cloning_loss(TINY, unravel(p), inputs, label_smoothing=0.0)

  @fast_jit
  def train(flat):
    def step(carry, _):
      p, s = carry
      (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
      updates, s = opt.update(grads, s, p)
      return (optax.apply_updates(p, updates), s), (loss, metrics['accuracy_top1'])
    _, (losses, acc) = jax.lax.scan(step, (flat, opt.init(flat)), None, length=100)
    return losses, acc

  losses, acc = jax.device_get(train(flat))
  assert abs(losses[0] - np.log(K)) < 0.5, losses[0]
  assert losses[-1] < 0.25 * losses[0], (losses[0], losses[-1])
  assert acc[-1] > 0.8, acc[-1]


def test_per_type_decoding():
  """top_k / temperature per agent type: each row samples among its own type's top-k;
  a type at k = 1 is greedy; one value for all types decodes as before."""
  from spacer_jax.models.rollout import sample_tokens
  r = np.random.default_rng(0)
  log_probs = jax.nn.log_softmax(jnp.asarray(r.normal(size=(64, 3, 20)), jnp.float32))
  types = jnp.broadcast_to(jnp.array([1, 2, 3]), (64, 3))  # vehicle, pedestrian, cyclist
  ids = np.asarray(sample_tokens(log_probs, jax.random.key(0), (5, 1, 20), 1.0, types))
  ranks = np.argsort(-np.asarray(log_probs), axis=-1)
  rank_of = np.take_along_axis(np.argsort(ranks, axis=-1), ids[..., None], -1)[..., 0]
  assert rank_of[:, 0].max() <= 4 and rank_of[:, 0].max() >= 2   # vehicles: top-5
  assert (rank_of[:, 1] == 0).all()                              # pedestrians: greedy
  assert rank_of[:, 2].max() >= 6                                # cyclists: all 20
  same = sample_tokens(log_probs, jax.random.key(0), (5, 5, 5), (1.0, 1.0, 1.0), types)
  np.testing.assert_array_equal(
      np.asarray(same), np.asarray(sample_tokens(log_probs, jax.random.key(0), 5, 1.0)))
  np.testing.assert_array_equal(  # k = 1 for every type: greedy, no randomness.
      np.asarray(sample_tokens(log_probs, jax.random.key(1), 1, 0.5)),
      np.argmax(np.asarray(log_probs), -1))
  with pytest.raises(ValueError, match='object types'):
    sample_tokens(log_probs, jax.random.key(0), (5, 1, 20), 1.0)
  with pytest.raises(ValueError, match='three'):
    sample_tokens(log_probs, jax.random.key(0), (5, 1), 1.0, types)


def test_history_dropout_only_in_training():
  """Training passes with history dropout hide an agent position's own past from it;
  evaluation passes (deterministic) are exactly the model without it."""
  import dataclasses
  inputs = _synthetic_inputs(seed=2)
  params = models.init_reference(TINY, jax.random.key(3), inputs)
  blind = dataclasses.replace(TINY, history_dropout=0.9)
  np.testing.assert_array_equal(
      np.asarray(models.reference_log_probs(blind, params, inputs)),
      np.asarray(models.reference_log_probs(TINY, params, inputs)))
  from spacer_jax.models.reference import ReferenceModel
  one = jax.tree.map(lambda a: a[0], inputs)
  run = lambda cfg, key: np.asarray(ReferenceModel(cfg).apply(
      params, one, deterministic=False, rngs={'dropout': key}))
  with_history = run(TINY, jax.random.key(0))
  without = run(blind, jax.random.key(0))
  valid = _valid(inputs)[0]
  moved = np.abs(without - with_history).max(-1)[valid]
  # Positions with earlier history change; the first position of each agent has none.
  assert (moved > 1e-4).mean() > 0.5
  first = np.zeros_like(valid)
  first[:, 0] = True
  np.testing.assert_allclose(without[first & valid], with_history[first & valid], atol=1e-5)
  with pytest.raises(ValueError, match='history_dropout'):
    dataclasses.replace(TINY, history_dropout=1.0)
