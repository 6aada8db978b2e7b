"""Physically possible token transitions (tokens.feasibility): the speed-change bound,
its agreement with logged driving, and the start of agents without a last history token.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.data import generator
from spacer_jax.models.default_vocabulary import get_or_build_default_vocabulary
from spacer_jax.sim.builders import stack_states
from spacer_jax.tokens import feasibility
from spacer_jax.tokens.builder import primitive_vocabulary
from spacer_jax.tokens.tokenize import tokenize
from spacer_jax.tokens.vocabulary import agent_type_index

VOCAB = primitive_vocabulary(32)


def test_a_fast_car_cannot_take_the_standstill_token():
  speeds = np.asarray(feasibility.token_speeds(VOCAB))
  assert speeds.shape == (3, 32) and speeds[:, 0].max() == 0.0
  types = jnp.array([0, 0, 1, 0])
  last = jnp.array([25.0, 3.0, 1.4, 25.0])
  known = jnp.array([True, True, True, False])
  ok = np.asarray(feasibility.feasible_tokens(VOCAB, types, last, known))
  limit = feasibility.DEFAULT_LIMITS.as_array()
  assert not ok[0, 0]  # 25 m/s -> standstill in 0.2 s.
  np.testing.assert_array_equal(ok[0], np.abs(speeds[0] - 25.0) <= limit[0])
  assert ok[1, 0] and ok[1].sum() < 32  # 3 m/s may stop, not jump to the fastest token.
  np.testing.assert_array_equal(ok[2], np.abs(speeds[1] - 1.4) <= limit[1])
  assert ok[3].all()  # Unknown last speed: no constraint.
  # Faster than every token: the nearest in speed stays, so there is always a move.
  lonely = np.asarray(feasibility.feasible_tokens(VOCAB, jnp.array([1]), jnp.array([40.0]),
                                                  jnp.array([True])))
  assert lonely.sum() >= 1 and lonely[0, np.argmax(speeds[1])]


def test_restricted_log_probs_renormalise_over_feasible_tokens():
  lp = jax.nn.log_softmax(jnp.arange(6.0))
  ok = jnp.array([True, False, True, False, False, False])
  out = np.asarray(feasibility.restrict_log_probs(lp, ok))
  assert np.isneginf(out[~np.asarray(ok)]).all()
  np.testing.assert_allclose(np.exp(out[[0, 2]]), np.exp([0.0, 2.0]) / (1 + np.exp(2.0)),
                             rtol=1e-6)


@pytest.mark.parametrize('seeds', [range(20_000_000, 20_000_006)])
def test_every_logged_transition_is_feasible(seeds):
  """The bounds come from seeds 0-99 and 1000-1399; on other scenes every consecutive
  pair of expert tokens is still within them (the data never needs an infeasible one)."""
  vocab = get_or_build_default_vocabulary()
  gen = generator.GeneratorConfig(num_objects=32, num_roadgraph_points=6000)
  states = stack_states([generator.generate_scenario(s, gen) for s in seeds])
  tok = jax.jit(lambda s: tokenize(vocab, s.log_trajectory, s.object_metadata.object_types))(
      states)
  types = agent_type_index(states.object_metadata.object_types)
  speeds = feasibility.token_speeds(vocab)[types[..., None], tok.token_ids]  # (B, N, L)
  pair = np.asarray(tok.valid[..., :-1] & tok.valid[..., 1:])
  ok = feasibility.feasible_tokens(vocab, jnp.broadcast_to(types[..., None], speeds.shape)[
      ..., 1:], speeds[..., :-1], jnp.ones(speeds.shape[:-1] + (speeds.shape[-1] - 1,), bool))
  taken = np.take_along_axis(np.asarray(ok), np.asarray(tok.token_ids[..., 1:, None]), -1)[
      ..., 0]
  assert pair.sum() > 5_000
  assert taken[pair].all()


def test_an_agent_appearing_now_starts_from_its_current_motion(two_lane_state):
  # Car 1 (8 m/s along +x) appears at the current step: no last history token.
  traj = two_lane_state.log_trajectory
  valid = traj.valid.at[1, :10].set(False)
  state = two_lane_state.replace(log_trajectory=traj.replace(valid=valid),
                                 sim_trajectory=traj.replace(valid=valid),
                                 timestep=jnp.asarray(10, jnp.int32))
  ids = np.asarray(feasibility.current_motion_tokens(VOCAB, state))
  speeds = np.asarray(feasibility.token_speeds(VOCAB))[0]
  poses = np.asarray(VOCAB.poses)[0]
  # The token that best continues 8 m/s straight ahead: nearest in end position.
  want = np.argmin(np.linalg.norm(poses[:, -1, :2] - [1.6, 0.0], axis=-1))
  assert ids[1] == want and abs(speeds[ids[1]] - 8.0) < 2.0
  uniform = jnp.full((8, 32), -np.log(32.0))
  history_valid = jnp.array([True, False, True] + [False] * 5)
  lp = np.asarray(feasibility.start_from_current_motion(VOCAB, state, uniform,
                                                        history_valid))
  assert lp[1, ids[1]] == 0.0 and np.isneginf(np.delete(lp[1], ids[1])).all()
  np.testing.assert_array_equal(lp[0], np.asarray(uniform[0]))  # Has a history token.
  # Its last speed is unknown (no pose 2 steps back); car 0's is its 10 m/s.
  speed, known = feasibility.last_token_speed(state, 2)
  assert not bool(known[1]) and bool(known[0])
  assert float(speed[0]) == pytest.approx(10.0, abs=1e-3)
