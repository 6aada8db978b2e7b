"""The one acting path (spacer_jax.spacer.acting): decodings and the policy function."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.spacer.acting import (
    GREEDY,
    SAMPLE,
    Decoding,
    decode_actions,
    make_policy_fn,
)

LOGITS = jax.random.normal(jax.random.key(0), (3, 5, 12)) * 3.0


def test_greedy_is_argmax_and_sample_is_the_training_draw():
  np.testing.assert_array_equal(decode_actions(LOGITS, jax.random.key(1), GREEDY),
                                jnp.argmax(LOGITS, -1))
  # The whole-distribution draw is exactly the categorical draw training always made,
  # so fixed-seed training runs are unchanged.
  np.testing.assert_array_equal(decode_actions(LOGITS, jax.random.key(1), SAMPLE),
                                jax.random.categorical(jax.random.key(1), LOGITS, -1))


def test_top_k_draws_only_among_the_k_likeliest():
  top3 = np.asarray(jax.lax.top_k(LOGITS, 3)[1])
  draws = np.stack([np.asarray(decode_actions(LOGITS, jax.random.key(seed),
                                              Decoding(top_k=3))) for seed in range(20)])
  assert (draws[..., None] == top3).any(-1).all()
  assert (draws != draws[:1]).any(0).mean() > 0.5  # Not greedy: rows vary over seeds.
  # A low temperature concentrates the draw on the best token.
  cold = decode_actions(LOGITS, jax.random.key(3), Decoding(top_k=3, temperature=1e-3))
  np.testing.assert_array_equal(cold, top3[..., 0])


class _Net:
  """A stand-in network: logits are the observation, values their max."""

  def apply(self, params, obs):
    return obs * params, jnp.max(obs, -1)


def test_policy_fn_reports_log_probs_of_the_undecoded_policy():
  step = make_policy_fn(_Net(), Decoding(top_k=2))(1.0, LOGITS, jax.random.key(4))
  log_pi = jax.nn.log_softmax(LOGITS, -1)
  np.testing.assert_allclose(
      step.log_probs, np.take_along_axis(np.asarray(log_pi), np.asarray(step.actions)[..., None],
                                         -1)[..., 0], rtol=1e-6)
  np.testing.assert_array_equal(step.values, jnp.max(LOGITS, -1))
  assert step.actions.dtype == jnp.int32 and step.actions.shape == (3, 5)


def test_bad_decodings_name_the_field():
  with pytest.raises(ValueError, match='top_k'):
    Decoding(top_k=-1)
  with pytest.raises(ValueError, match='temperature'):
    Decoding(temperature=0.0)
