"""Late-fusion policy: parameter count, initial entropy, per-type heads, masked pooling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.spacer import losses, observation, policy


def _random_obs(seed, batch=(), n=6, kp=5, kr=9):
  """Features in [-1, 1] with random masks and types, like the real observation.

  numpy, not jax.random: eager jax ops compile one by one and cost seconds.
  """
  rng = np.random.default_rng(seed)
  lead = batch + (n,)
  def u(*shape):
    return jnp.asarray(rng.uniform(-1, 1, lead + shape), jnp.float32)
  return observation.PolicyObservation(
      ego=u(observation.EGO_DIM), partners=u(kp, observation.PARTNER_DIM),
      partner_mask=jnp.asarray(rng.random(lead + (kp,)) < 0.6),
      road=u(kr, observation.ROAD_DIM), road_mask=jnp.asarray(rng.random(lead + (kr,)) < 0.8),
      type_index=jnp.asarray(rng.integers(0, 3, lead), jnp.int32),
      valid=jnp.ones(lead, bool))


_apply = jax.jit(policy.policy_apply, static_argnums=0)


@pytest.fixture(scope='module')
def model():
  module = policy.LateFusionPolicy(num_tokens=200)
  # An rbg key: its initialisers compile in half the time of threefry's.
  rng = jax.random.key(0, impl='unsafe_rbg')
  params = jax.jit(policy.init_policy, static_argnums=1)(rng, module, _random_obs(1))
  return module, params


def test_param_count_at_k200(model):
  _, params = model
  count = policy.count_params(params)
  assert 50_000 <= count <= 80_000
  # By hand: encoders (in, LayerNorm, out) of width 64 for 16 / 10 / 12 features,
  # fusion 192 -> 128, three heads 128 -> 32 -> 200, critic 128 -> 1.
  enc = sum(d * 64 + 64 + 128 + 64 * 64 + 64 for d in (16, 10, 12))
  heads = 3 * (128 * 32 + 32 + 32 * 200 + 200)
  assert count == enc + 192 * 128 + 128 + heads + 129 == 72_505


def test_compact_head_counts_and_selects_type():
  """A shared hidden layer (per-type bias) and a rank-r bottleneck before each type's
  K logits: the parameter count by hand, ln K at init, and each agent's own type."""
  module = policy.LateFusionPolicy(num_tokens=200, head_width=128, head_shared=True,
                                   head_rank=24)
  obs = _random_obs(7)
  params = jax.jit(policy.init_policy, static_argnums=1)(
      jax.random.key(0, impl='unsafe_rbg'), module, obs)
  enc = sum(d * 64 + 64 + 128 + 64 * 64 + 64 for d in (16, 10, 12))
  head = 128 * 128 + 3 * 128 + 128 * 24 + 3 * (24 * 200 + 200)
  assert policy.count_params(params) == enc + 192 * 128 + 128 + head + 129 == 75_161
  logits, _ = _apply(module, params, obs)
  np.testing.assert_allclose(losses.entropy(logits), np.log(200), rtol=0.01)
  def run(p, t):
    return _apply(module, p, obs.replace(type_index=jnp.full_like(obs.type_index, t)))[0]
  outs = [run(params, t) for t in range(3)]
  assert not np.allclose(outs[0], outs[1], atol=1e-5)
  for i, t in enumerate(np.asarray(obs.type_index)):
    np.testing.assert_allclose(logits[i], outs[t][i], atol=1e-6)
  # The type reaches the shared hidden layer through its bias alone.
  b1 = params['params']['actor_b1']
  same = {'params': dict(params['params'], actor_b1=jnp.broadcast_to(b1[:1], b1.shape),
                         actor_w2=jnp.broadcast_to(params['params']['actor_w2'][:1],
                                                   params['params']['actor_w2'].shape),
                         actor_b2=jnp.zeros_like(params['params']['actor_b2']))}
  np.testing.assert_allclose(run(same, 0), run(same, 2), atol=1e-6)


def test_shared_output_layer_differs_by_type_through_biases():
  """One K-logit layer for all types: the count by hand; agents of different types
  still get different logits (per-type biases in both layers)."""
  module = policy.LateFusionPolicy(num_tokens=200, head_width=96, head_shared=True,
                                   head_shared_output=True)
  obs = _random_obs(8)
  params = jax.jit(policy.init_policy, static_argnums=1)(
      jax.random.key(0, impl='unsafe_rbg'), module, obs)
  enc = sum(d * 64 + 64 + 128 + 64 * 64 + 64 for d in (16, 10, 12))
  head = 128 * 96 + 3 * 96 + 96 * 200 + 3 * 200
  assert policy.count_params(params) == enc + 192 * 128 + 128 + head + 129
  p = params['params']
  shifted = {'params': dict(p, actor_b2=jnp.arange(3.0)[:, None] * jnp.ones((3, 200)),
                            actor_b1=jnp.zeros_like(p['actor_b1']))}
  def run(q, t):
    return _apply(module, q, obs.replace(type_index=jnp.full_like(obs.type_index, t)))[0]
  for t in range(3):
    np.testing.assert_allclose(run(shifted, t) - run(shifted, 0), float(t), atol=1e-5)
  logits, _ = _apply(module, params, obs)
  for i, t in enumerate(np.asarray(obs.type_index)):
    np.testing.assert_allclose(logits[i], run(params, t)[i], atol=1e-6)


def test_initial_entropy_is_ln_k(model):
  module, params = model
  obs = _random_obs(2, batch=(2, 1))
  logits, values = _apply(module, params, obs)
  ent = losses.entropy(logits)
  np.testing.assert_allclose(ent, np.log(200), rtol=0.01)
  # Not trivially uniform: the heads do depend on the input.
  assert float(jnp.std(logits)) > 1e-4


@pytest.mark.parametrize('batch', [(), (2, 1)])
def test_batch_shapes_and_per_agent_independence(model, batch):
  module, params = model
  obs = _random_obs(3, batch=batch)
  logits, values = _apply(module, params, obs)
  assert logits.shape == batch + (6, 200) and values.shape == batch + (6,)
  # Permuting the agents permutes the outputs: agents do not mix inside the network.
  perm = np.array([3, 0, 5, 1, 4, 2])
  nb = len(batch)
  shuffled = jax.tree_util.tree_map(lambda x: x[(slice(None),) * nb + (perm,)], obs)
  l2, v2 = _apply(module, params, shuffled)
  np.testing.assert_allclose(l2, logits[..., perm, :], atol=1e-5)
  np.testing.assert_allclose(v2, values[..., perm], atol=1e-5)


def test_type_selects_the_head(model):
  module, params = model
  obs = _random_obs(4)
  def run(p, t):
    return _apply(module, p, obs.replace(type_index=jnp.full_like(
        obs.type_index, t)))
  outs = [run(params, t) for t in range(3)]
  # Separate weights: the heads disagree; the critic does not depend on the type.
  assert not np.allclose(outs[0][0], outs[1][0], atol=1e-4)
  assert not np.allclose(outs[1][0], outs[2][0], atol=1e-4)
  np.testing.assert_allclose(outs[0][1], outs[2][1])
  # Head t's output bias moves the logits of type-t agents only.
  shifted = {'params': dict(params['params'],
                            actor_b2=jnp.arange(3.0)[:, None] * jnp.ones((3, 200)))}
  for t in range(3):
    np.testing.assert_allclose(run(shifted, t)[0] - outs[t][0], float(t), atol=1e-5)
  # Mixed types pick each agent's own head.
  logits, _ = _apply(module, params, obs)
  for i, t in enumerate(np.asarray(obs.type_index)):
    np.testing.assert_allclose(logits[i], outs[t][0][i], atol=1e-6)


def test_masked_entries_do_not_matter(model):
  module, params = model
  obs = _random_obs(5)
  rng = np.random.default_rng(6)
  noise = rng.normal(size=obs.partners.shape).astype(np.float32) * 10
  road_noise = rng.normal(size=obs.road.shape).astype(np.float32) * 10
  other = obs.replace(
      partners=jnp.where(obs.partner_mask[..., None], obs.partners, noise),
      road=jnp.where(obs.road_mask[..., None], obs.road, road_noise))
  a = _apply(module, params, obs)
  b = _apply(module, params, other)
  np.testing.assert_allclose(a[0], b[0], atol=1e-6)
  np.testing.assert_allclose(a[1], b[1], atol=1e-6)
  # With nothing valid the pooled group is zero, and changing valid entries matters.
  empty = obs.replace(partner_mask=jnp.zeros_like(obs.partner_mask))
  c = _apply(module, params, empty)
  assert np.all(np.isfinite(c[0]))
  assert not np.allclose(a[0], c[0])


def test_masked_max():
  x = jnp.array([[1.0, -5.0], [3.0, -7.0], [100.0, 100.0]])
  mask = jnp.array([True, True, False])
  np.testing.assert_allclose(policy.masked_max(x, mask), [3.0, -5.0])
  np.testing.assert_allclose(policy.masked_max(x, jnp.zeros(3, bool)), [0.0, 0.0])
