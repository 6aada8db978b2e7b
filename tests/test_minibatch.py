"""Chunked valid-rows-only minibatch gradients equal one dense pass over the minibatch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.spacer.losses import LossConfig, PPOBatch, ppo_loss
from spacer_jax.spacer.minibatch import (
    make_minibatch_gradient,
    minibatch_indices,
    pack_rows,
    resolve_chunk_rows,
)
from spacer_jax.spacer.observation import PolicyObservation
from spacer_jax.spacer.policy import LateFusionPolicy

W, SLOTS, K = 3, 40, 8


def _batch(seed: int, valid_share: float = 0.3) -> PPOBatch:
  rng = np.random.default_rng(seed)
  f = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  obs = PolicyObservation(
      ego=f(W, SLOTS, 5), partners=f(W, SLOTS, 4, 3),
      partner_mask=jnp.asarray(rng.random((W, SLOTS, 4)) < 0.5),
      road=f(W, SLOTS, 6, 2), road_mask=jnp.asarray(rng.random((W, SLOTS, 6)) < 0.8),
      type_index=jnp.asarray(rng.integers(0, 3, (W, SLOTS)), jnp.int32),
      valid=jnp.ones((W, SLOTS), bool))
  ref = jax.nn.log_softmax(f(W, SLOTS, K), -1)
  valid = rng.random((W, SLOTS)) < valid_share
  valid[2] = False  # A world with nothing to learn from.
  return PPOBatch(obs=obs, actions=jnp.asarray(rng.integers(0, K, (W, SLOTS)), jnp.int32),
                  log_probs=f(W, SLOTS) - 2.0, values=f(W, SLOTS), advantages=f(W, SLOTS),
                  returns=f(W, SLOTS), ref_log_probs=ref, valid=jnp.asarray(valid))


def test_pack_rows_lists_real_rows_first_in_world_order():
  index = jnp.asarray([[4, 2, 9], [7, 1, 0]], jnp.int32)
  real = jnp.asarray([[True, True, False], [True, False, False]])
  world, slot, count = pack_rows(index, real)
  assert int(count) == 3
  np.testing.assert_array_equal(np.asarray(world)[:3], [0, 0, 1])
  np.testing.assert_array_equal(np.asarray(slot)[:3], [4, 2, 7])


@pytest.mark.parametrize('chunk_rows', [1, 5, 64])
@pytest.mark.parametrize('normalize', [True, False])
def test_chunked_gradient_matches_one_dense_pass(chunk_rows, normalize):
  batch = _batch(chunk_rows)
  policy = LateFusionPolicy(num_tokens=K, width=8, hidden=8, head_width=4)
  params = policy.init(jax.random.PRNGKey(0), batch.obs)
  config = LossConfig(kl_coef=0.05, normalize_advantages=normalize)
  index, in_mb = minibatch_indices(batch.valid, jax.random.PRNGKey(3), 2)
  gradient = jax.jit(make_minibatch_gradient(policy.apply, config, chunk_rows))
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  for i in range(2):
    grads, metrics = gradient(params, batch, index[i], in_mb[i], None)
    dense = _dense_minibatch(batch, index[i], in_mb[i])
    (_, want), want_grads = jax.value_and_grad(ppo_loss, has_aux=True)(
        params, policy.apply, dense, config)
    jax.tree_util.tree_map(close, grads, want_grads)
    for key, value in want.items():
      close(metrics[key], value)
    assert int(metrics['rows']) == int(np.asarray(in_mb[i]).sum()) > 0


def _dense_minibatch(batch: PPOBatch, index: jax.Array, in_mb: jax.Array) -> PPOBatch:
  """The minibatch as one static-shape ``(W, c)`` batch, padding rows masked."""
  take = jax.vmap(lambda x, j: jnp.take(x, j, axis=0))
  dense = jax.tree_util.tree_map(lambda x: take(x, index), batch)
  return dense.replace(valid=dense.valid & in_mb)


def test_chunk_rows_default_depends_on_backend():
  assert resolve_chunk_rows(0, 'cpu') == 32
  assert resolve_chunk_rows(0, 'gpu') == 8192
  assert resolve_chunk_rows(100, 'cpu') == 100
  with pytest.raises(ValueError, match='chunk_rows'):
    resolve_chunk_rows(-1)


def test_empty_minibatch_gives_zero_gradient():
  batch = _batch(0)
  batch = batch.replace(valid=jnp.zeros_like(batch.valid))
  policy = LateFusionPolicy(num_tokens=K, width=8, hidden=8, head_width=4)
  params = policy.init(jax.random.PRNGKey(0), batch.obs)
  index, in_mb = minibatch_indices(batch.valid, jax.random.PRNGKey(3), 2)
  grads, metrics = make_minibatch_gradient(policy.apply, LossConfig(), 4)(
      params, batch, index[0], in_mb[0], None)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(grads))
  assert float(metrics['rows']) == 0.0 and float(metrics['loss']) == 0.0
