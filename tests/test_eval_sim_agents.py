"""Closed-loop sim agents: the runner, the scripted / reference / learned policies, the
policy loader and realism rollouts.

Tiny everything: generated scenes of 16 object slots and 4000 map points, primitive
vocabularies (K = 16 for the reference, 32 for the learned policy), an untrained
one-layer reference; programs compile without backend optimisation.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from factories import small_realism_options

from experiments.configs import reference as reference_configs
from experiments.configs import spacer as spacer_configs
from spacer_jax.data.generator import GeneratorConfig, generate_batch
from spacer_jax.eval import aggregate, compute_realism, sim_agents
from spacer_jax.eval import sim_agent_policies as policies
from spacer_jax.eval.sim_agents import Motion, closed_loop_fn
from spacer_jax.models import init_reference
from spacer_jax.models import train as reference_train
from spacer_jax.models import trainer as train_reference
from spacer_jax.models.checkpoint import save_reference
from spacer_jax.models.rollout import rollout_with_selector, sampling_selector
from spacer_jax.sim import agents, builders
from spacer_jax.sim.config import EnvConfig
from spacer_jax.sim.dynamics import get_dynamics_model
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.sim.rollout import rollout
from spacer_jax.spacer import factory
from spacer_jax.spacer import train as spacer_train
from spacer_jax.spacer.acting import GREEDY, SAMPLE, Decoding
from spacer_jax.spacer.rewards import AgentStatus
from spacer_jax.spacer.selfplay import Worlds
from spacer_jax.tokens import TokenEnvironment, save_vocabulary
from spacer_jax.tokens.builder import primitive_vocabulary
from spacer_jax.tokens.feasibility import DEFAULT_LIMITS
from spacer_jax.tokens.tokenize import match_tokens, token_corners
from spacer_jax.tokens.vocabulary import agent_type_index
from spacer_jax.training import Checkpointer

GEN = GeneratorConfig(num_objects=16, num_roadgraph_points=4000)
FAST = {'xla_backend_optimization_level': 0}
K = 16
ENV = MultiAgentEnvironment(get_dynamics_model('delta_global'),
                            EnvConfig(metrics=('overlap',), rewards={}))
# Without metrics, for the tests that only look at trajectories (less to compile).
BARE = MultiAgentEnvironment(get_dynamics_model('delta_global'),
                             EnvConfig(metrics=(), rewards={}, build_road_edge_index=False))
VOCAB = primitive_vocabulary(K)


@pytest.fixture(scope='module')
def scenes():
  # A T-junction and an intersection with someone within 6 m of the SDC (the ego
  # override test needs the SDC among others' nearest agents).
  return generate_batch([6, 9], GEN)


def _np(tree):
  return jax.tree.map(np.asarray, tree)


# ------------------------------------------------------------------ scripted policies
@pytest.fixture(scope='module')
def scripted(scenes):
  """R = 2 realism rollouts ``(R, 2, N, 80)`` of log replay and constant velocity,
  shared by the tests below (one compile each)."""
  return {p.name: sim_agents.realism_rollouts(p, None, scenes, jax.random.key(0), 2,
                                              env=BARE, vocab=VOCAB, num_steps=40,
                                              jit_options=FAST)
          for p in (policies.LogReplayPolicy(), policies.ConstantVelocityPolicy())}


def test_log_replay_reproduces_the_log_exactly(scenes, scripted):
  sim, log = _np(scripted['log_replay']), _np(scenes.log_trajectory)
  assert sim.x.shape == (2, 2, 16, 80)  # (R, batch, N, steps 11..90)
  # Objects present at the current step follow the log wherever it is valid ...
  present = log.valid[..., 10]
  logged = log.valid[..., 11:] & present[..., None]
  for field in ('x', 'y', 'yaw', 'vel_x', 'vel_y', 'length', 'timestamp_micros'):
    for r in range(2):
      np.testing.assert_array_equal(getattr(sim, field)[r][logged],
                                    getattr(log, field)[..., 11:][logged], err_msg=field)
  # ... and stay simulated to the last step (WOSAC's sim set), also where their log
  # ends: at constant velocity from the last logged step (known answers, logs ending
  # at and between decision boundaries: tests/test_eval_sim_set.py).
  assert sim.valid[:, present].all()
  ends = present & ~log.valid[..., -1]
  last = log.valid.shape[-1] - 1 - np.argmax(log.valid[..., ::-1], -1)  # last valid step
  for b, i in zip(*np.nonzero(ends)):
    k = last[b, i]  # sim index k - 10 is step k + 1
    for field, vel in (('x', 'vel_x'), ('y', 'vel_y')):
      np.testing.assert_allclose(getattr(sim, field)[:, b, i, k - 10],
                                 getattr(log, field)[b, i, k] + 0.1 * getattr(log, vel)[b, i, k],
                                 atol=1e-4, err_msg=field)
  # Objects absent at the current step never appear (the environment's rule).
  assert not sim.valid[:, ~present].any()
  # A second call (new key, equal policy) reuses the compiled rollouts.
  hits = sim_agents._realism_fn.cache_info().hits
  again = sim_agents.realism_rollouts(policies.LogReplayPolicy(), None, scenes,
                                      jax.random.key(1), 2, env=BARE, vocab=VOCAB,
                                      num_steps=40, jit_options=FAST)
  assert sim_agents._realism_fn.cache_info().hits == hits + 1
  np.testing.assert_array_equal(np.asarray(again.x), sim.x)


def test_constant_velocity_matches_the_10hz_agent(scenes, scripted):
  got = _np(scripted['constant_velocity'])
  ref = jax.jit(lambda s: rollout(BARE, BARE.reset(s), agents.ConstantVelocityAgent(),
                                  jax.random.key(0), 80, compute_metrics=False).final_state,
                compiler_options=FAST)(scenes).sim_trajectory
  ref = jax.tree.map(lambda a: np.asarray(a)[..., 11:], ref)
  np.testing.assert_array_equal(got.valid[0], ref.valid)
  ok = ref.valid
  for field in ('x', 'y', 'yaw', 'vel_x', 'vel_y'):
    np.testing.assert_allclose(getattr(got, field)[0][ok], getattr(ref, field)[ok],
                               atol=2e-3, err_msg=field)
  moved = np.abs(got.x[0, ..., -1] - got.x[0, ..., 0])[ok[..., -1]]
  assert moved.max() > 10.0  # Somebody drove: the comparison is not trivial.


def _follow_scene():
  """Two cars in a lane: the follower logged at 15 m/s straight through the leader,
  which drives at 8 m/s 30 m ahead; 91 steps, 4 slots, the follower is the SDC."""
  t = np.arange(91) * 0.1
  x = np.stack([15.0 * t, 30.0 + 8.0 * t])
  zeros = np.zeros((2, 91))
  traj = builders.trajectory_from_arrays(
      x, zeros, zeros, np.ones((2, 91), bool), np.full(2, 4.5), np.full(2, 2.0),
      vel_x=np.stack([np.full(91, 15.0), np.full(91, 8.0)]), vel_y=zeros, num_objects=4)
  meta = builders.metadata_from_arrays(np.ones(2, np.int32), num_objects=4, sdc_index=0)
  road = builders.roadgraph_from_polylines(
      [builders.Polyline(np.array([[-50.0, -5.0], [400.0, -5.0]]), 15, 1)], num_points=1024)
  return builders.make_state(traj, meta, road)


def test_idm_keeps_its_gap_and_equals_the_10hz_agent():
  state = _follow_scene()
  policy = policies.IDMPolicy(ENV)
  out = closed_loop_fn(policy, env=ENV, vocab=VOCAB, num_steps=40,
                       jit_options=FAST)(None, state, jax.random.key(0))
  sim = _np(out.final_state.sim_trajectory)
  gap = sim.x[1, 10:] - sim.x[0, 10:] - 4.5
  assert gap.min() > 2.0, gap.min()
  assert sim.x[0, 90] > 40.0  # The follower did drive.
  assert out.metrics['overlap'].value.shape == (40, 2, 4)  # (decisions, S, N)
  assert not np.asarray(out.metrics['overlap'].value > 0).any()
  assert int(out.final_state.timestep) == 90
  # No one overrides the motion, so deciding every S steps changes nothing.
  ref = jax.jit(lambda s: rollout(BARE, BARE.reset(s), agents.IDMAgent(), jax.random.key(0),
                                  80, compute_metrics=False).final_state,
                compiler_options=FAST)(state).sim_trajectory
  np.testing.assert_allclose(sim.x, np.asarray(ref.x), atol=1e-4)
  np.testing.assert_array_equal(sim.valid, np.asarray(ref.valid))


# ------------------------------------------------------------------ the runner
def test_runner_keeps_a_prebuilt_road_edge_index():
  state = _follow_scene()
  env = MultiAgentEnvironment(get_dynamics_model('delta_global'),
                              EnvConfig(metrics=(), rewards={}))
  run = closed_loop_fn(policies.LogReplayPolicy(), env=env, vocab=VOCAB, num_steps=5,
                       jit_options=FAST)
  raw = run(None, state, jax.random.key(0))
  # The final state carries the index the runner built, and it is reset again anyway.
  assert state.road_edge_index is None and raw.final_state.road_edge_index is not None
  pre = run(None, raw.final_state, jax.random.key(0))
  for x, y in zip(jax.tree.leaves(raw), jax.tree.leaves(pre)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert int(pre.final_state.timestep) == 20


@dataclasses.dataclass(frozen=True)
class _BadPolicy(policies.LogReplayPolicy):
  def propose(self, params, carry, state, rng):
    m = super().propose(params, carry, state, rng)
    return Motion(m.poses[..., :1, :], m.velocities, m.valid)


def test_runner_errors(scenes):
  with pytest.raises(ValueError, match=r'num_steps=41 must be in \[1, 40\]'):
    sim_agents.closed_loop_rollout(policies.LogReplayPolicy(), None, scenes,
                                   jax.random.key(0), env=ENV, vocab=VOCAB, num_steps=41)
  with pytest.raises(ValueError, match=r'propose\(...\).poses has shape \(2, 16, 1, 3\)'):
    sim_agents.closed_loop_rollout(_BadPolicy(), None, scenes, jax.random.key(0), env=ENV,
                                   vocab=VOCAB, num_steps=2)
  with pytest.raises(ValueError, match='moves 3 simulator steps'):
    sim_agents.closed_loop_rollout(policies.LogReplayPolicy(3), None, scenes,
                                   jax.random.key(0), env=ENV, vocab=VOCAB, num_steps=2)


# ------------------------------------------------------------------ reference policy
STEPS = 8
TOP_K, TEMPERATURE = 8, 0.25


def _random_reference_params(config, scenes):
  """Random variables with the init's shapes (traced, never compiled): normal weights
  scaled by 1 / sqrt(fan in), unit scales, zero biases."""
  one = jax.tree.map(lambda a: a[:1], scenes)
  inputs = jax.eval_shape(lambda s: reference_train.make_inputs(VOCAB, s, config), one)
  shapes = jax.eval_shape(lambda key, i: init_reference(config, key, i), jax.random.key(0),
                          inputs)
  r = np.random.default_rng(0)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("scale']"):
      return jnp.ones(leaf.shape, leaf.dtype)
    if name.endswith("bias']"):
      return jnp.zeros(leaf.shape, leaf.dtype)
    fan_in = leaf.shape[0] if leaf.ndim > 1 else 1
    return jnp.asarray(r.normal(0.0, fan_in ** -0.5, leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@dataclasses.dataclass(frozen=True)
class _SwitchEgo:
  """Test planner: with ``params`` True the SDC stands still, else it follows its log."""

  name = 'switch_ego'

  def init(self, params, state, rng):
    return jnp.zeros((), jnp.int32)

  def plan(self, params, carry, state, rng):
    sdc = state.object_metadata.is_sdc
    log = policies.LogReplayPolicy().propose(None, None, state, rng)
    cur = state.current_sim_trajectory
    still = jnp.broadcast_to(jnp.stack([cur.x, cur.y, cur.yaw], -1), log.poses.shape)
    poses = jnp.where(params, still, log.poses)
    velocities = jnp.where(params, 0.0, log.velocities)
    row = lambda a: jnp.sum(jnp.where(sdc[..., None, None], a, 0.0), -3, keepdims=True)
    valid = jnp.any(sdc & log.substep_valid().all(-1), -1, keepdims=True)
    return carry + 1, Motion(row(poses), row(velocities), valid)


@pytest.fixture(scope='module')
def reference(scenes):
  """An untrained tiny reference, its policy and ONE compiled closed loop with the
  test planner (scenes without an SDC run it as if there were no planner)."""
  config = train_reference.model_config(reference_configs.get_config('tiny'), K)
  params = _random_reference_params(config, scenes)
  token_env = TokenEnvironment(BARE, VOCAB)
  policy = policies.ReferencePolicy(config, VOCAB, token_env, top_k=TOP_K,
                                    temperature=TEMPERATURE, max_steps=STEPS)
  run = closed_loop_fn(policy, env=BARE, vocab=VOCAB, num_steps=STEPS, ego=_SwitchEgo(),
                       jit_options=FAST)
  return config, params, token_env, policy, run


def _executed_tokens(final_state, num_steps):
  """The nearest token ``(..., N, num_steps)`` of every object's simulated motion in each
  decision step (one vectorised match over all steps)."""
  sim = final_state.sim_trajectory
  pose = jnp.stack([sim.x, sim.y, sim.yaw], -1)  # (..., N, T, 3)
  start = pose[..., 10:10 + 2 * num_steps:2, :]  # (..., N, R, 3)
  target = pose[..., 11:11 + 2 * num_steps, :].reshape(*start.shape[:-1], 2, 3)
  length = jnp.broadcast_to(sim.length[..., 10:11], start.shape[:-1])
  width = jnp.broadcast_to(sim.width[..., 10:11], start.shape[:-1])
  types = jnp.broadcast_to(final_state.object_metadata.object_types[..., None],
                           start.shape[:-1])
  corners = token_corners(VOCAB, agent_type_index(types), length, width)
  return np.asarray(match_tokens(corners, start, target, length, width)[0])


def test_reference_policy_reproduces_reference_rollout(scenes, reference):
  config, params, token_env, policy, run = reference
  # Without an SDC the planner's row replaces nothing: the policy drives everyone.
  no_sdc = scenes.replace(object_metadata=scenes.object_metadata.replace(
      is_sdc=jnp.zeros_like(scenes.object_metadata.is_sdc)))
  got = run(params, no_sdc, jax.random.key(5), jnp.asarray(True))
  want = jax.jit(lambda p, s, k: rollout_with_selector(
      config, p, VOCAB, token_env, s, k, sampling_selector(TOP_K, TEMPERATURE), STEPS),
      compiler_options=FAST)(params, no_sdc, jax.random.key(5))
  for field in ('x', 'y', 'yaw', 'vel_x', 'vel_y', 'valid'):
    np.testing.assert_array_equal(np.asarray(getattr(got.final_state.sim_trajectory, field)),
                                  np.asarray(getattr(want.final_state.sim_trajectory, field)),
                                  err_msg=field)
  # Same tokens: what each object executed is the sampled token of reference_rollout.
  valid = np.asarray(want.token_valid[..., 5:])
  assert valid.sum() > 100
  ids = np.asarray(want.token_ids[..., 5:])
  np.testing.assert_array_equal(_executed_tokens(got.final_state, STEPS)[valid], ids[valid])
  assert len(np.unique(ids[valid])) > 3  # sampled, not a constant
  assert policy.num_params() == policy.num_params(params) > 10_000


def test_feasible_decoding_never_stops_a_fast_car_within_one_token(scenes, reference):
  """A reference that puts nearly all mass on the standstill token: decoded as it is,
  moving cars stop dead within 0.2 s; with the speed-change bound (the default) no
  vehicle loses more than its bound's worth of speed in one token."""
  config, params, token_env, _, _ = reference
  stopper = jax.tree_util.tree_map_with_path(
      lambda path, x: x.at[:, 0].set(30.0)
      if jax.tree_util.keystr(path).endswith("['out_bias']") else x, params)
  hist = 5
  vehicles = np.asarray(scenes.object_metadata.object_types == 1)[..., None]
  drops = {}
  for feasible in (False, True):
    result = jax.jit(lambda p, s, k, f=feasible: rollout_with_selector(
        config, p, VOCAB, token_env, s, k, sampling_selector(TOP_K, TEMPERATURE), STEPS,
        feasible=f), compiler_options=FAST)(stopper, scenes, jax.random.key(2))
    poses, valid = np.asarray(result.token_poses), np.asarray(result.token_valid)
    speed = np.linalg.norm(np.diff(poses[..., :2], axis=-2), axis=-1) / 0.2  # (B, N, L)
    both = valid[..., hist - 1:-1] & valid[..., hist:] & vehicles
    before, after = speed[..., hist - 1:-1][both], speed[..., hist:][both]
    drops[feasible] = (before, after)
  before, after = drops[False]
  assert np.sum((before >= 8.0) & (after <= 0.5)) >= 3  # Dead stops from >= 8 m/s.
  before, after = drops[True]
  assert before.max() >= 8.0
  assert np.all(before - after <= DEFAULT_LIMITS.vehicle + 1e-3)
  assert not np.any((before >= 8.0) & (after <= 0.5))


def test_reference_policy_reacts_to_an_ego_override(scenes, reference):
  _, params, _, _, run = reference
  moving = run(params, scenes, jax.random.key(3), jnp.asarray(False))
  still = run(params, scenes, jax.random.key(3), jnp.asarray(True))
  sdc = np.asarray(scenes.object_metadata.is_sdc)
  a, b = _np(moving.final_state.sim_trajectory), _np(still.final_state.sim_trajectory)
  # The SDC follows the planner: its log, or standing still.
  end = 11 + 2 * STEPS
  np.testing.assert_array_equal(a.x[sdc][:, :end],
                                np.asarray(scenes.log_trajectory.x)[sdc][:, :end])
  np.testing.assert_array_equal(b.x[sdc][:, 10:end],
                                np.repeat(b.x[sdc][:, 10:11], end - 10, -1))
  # Same key, different ego: the others drive differently (their tokens changed) ...
  others = ~sdc & a.valid[..., 10]
  ta = _executed_tokens(moving.final_state, STEPS)[others]
  tb = _executed_tokens(still.final_state, STEPS)[others]
  assert (ta != tb).any()
  # ... but not before they could have seen the difference.
  np.testing.assert_array_equal(ta[:, 0], tb[:, 0])


def test_non_reactive_reference_never_sees_the_ego(scenes, reference):
  """reactive=False feeds the model the SDC's logged motion: whatever the planner does,
  the other objects take the same tokens (they may drive into the ego)."""
  config, params, token_env, policy, _ = reference
  blind = dataclasses.replace(policy, reactive=False)
  assert blind != policy and hash(blind) != hash(policy)
  run = closed_loop_fn(blind, env=BARE, vocab=VOCAB, num_steps=STEPS, ego=_SwitchEgo(),
                       jit_options=FAST)
  moving = run(params, scenes, jax.random.key(3), jnp.asarray(False))
  still = run(params, scenes, jax.random.key(3), jnp.asarray(True))
  sdc = np.asarray(scenes.object_metadata.is_sdc)
  a = _np(moving.final_state.sim_trajectory)
  b = _np(still.final_state.sim_trajectory)
  assert not np.allclose(a.x[sdc][:, 11:11 + 2 * STEPS], b.x[sdc][:, 11:11 + 2 * STEPS])
  others = ~sdc & a.valid[..., 10]
  np.testing.assert_array_equal(_executed_tokens(moving.final_state, STEPS)[others],
                                _executed_tokens(still.final_state, STEPS)[others])


def test_reference_policy_checks(reference, scenes):
  config, params, token_env, _, _ = reference
  policy = policies.ReferencePolicy(config, VOCAB, token_env, max_steps=4)
  with pytest.raises(ValueError, match='max_steps=4 is shorter than the 6'):
    sim_agents.closed_loop_rollout(policy, params, scenes, jax.random.key(0), env=ENV,
                                   vocab=VOCAB, num_steps=6)
  with pytest.raises(ValueError, match='temperature must be > 0'):
    policies.ReferencePolicy(config, VOCAB, token_env, temperature=0.0)
  with pytest.raises(ValueError, match='the vocabulary has 32 tokens'):
    policies.ReferencePolicy(config, primitive_vocabulary(32), token_env)


def test_reference_policies_compare_by_their_configuration(reference):
  config, _, token_env, policy, _ = reference
  # Rebuilt vocabularies and token environment with the same contents: equal, one
  # compiled program.
  rebuilt = policies.ReferencePolicy(config, primitive_vocabulary(K),
                                     TokenEnvironment(BARE, primitive_vocabulary(K)),
                                     top_k=TOP_K, temperature=TEMPERATURE, max_steps=STEPS)
  assert rebuilt == policy and hash(rebuilt) == hash(policy)
  assert rebuilt in {policy: 0}
  scaled = type(VOCAB).from_poses(np.asarray(VOCAB.poses) * 1.5, VOCAB.box_sizes)
  for other in (dataclasses.replace(policy, top_k=1),
                dataclasses.replace(policy, temperature=1.0),
                dataclasses.replace(policy, max_steps=STEPS + 1),
                dataclasses.replace(policy, config=dataclasses.replace(config, dropout=0.5)),
                dataclasses.replace(policy, vocab=scaled),
                dataclasses.replace(policy, token_env=TokenEnvironment(BARE, scaled)),
                dataclasses.replace(policy, token_env=TokenEnvironment(ENV, VOCAB))):
    assert other != policy and hash(other) != hash(policy)


def test_scripted_policies_compare_by_their_configuration():
  same = [(policies.LogReplayPolicy(), policies.LogReplayPolicy(2)),
          (policies.ConstantVelocityPolicy(), policies.ConstantVelocityPolicy(2, 0.1)),
          (policies.IDMPolicy(BARE), policies.IDMPolicy(BARE, agents.IDMAgent()))]
  for a, b in same:
    assert a == b and hash(a) == hash(b)
  different = [(policies.LogReplayPolicy(), policies.LogReplayPolicy(3)),
               (policies.LogReplayPolicy(), policies.LogReplayPolicy(dt=0.2)),
               (policies.ConstantVelocityPolicy(), policies.ConstantVelocityPolicy(dt=0.2)),
               (policies.IDMPolicy(BARE), policies.IDMPolicy(ENV)),
               (policies.IDMPolicy(BARE),
                policies.IDMPolicy(BARE, agents.IDMAgent(desired_speed=5.0))),
               (policies.LogReplayPolicy(), policies.ConstantVelocityPolicy())]
  for a, b in different:
    assert a != b

  # A policy that opts out of the generated equality compares by identity (the base
  # class's), so it never shares another object's compiled program.
  @dataclasses.dataclass(frozen=True, eq=False)
  class Opaque(sim_agents.SimAgentPolicy):
    scale: float = 1.0

    def propose(self, params, carry, state, rng):
      raise NotImplementedError

  a, b = Opaque(), Opaque()
  assert a == a and hash(a) == hash(a) and a != b


def test_two_reference_policies_in_one_process_compile_apart(scenes, reference):
  """The realism cache and jit's static-argument cache tell reference policies apart
  (they once shared the first compiled one: all ReferencePolicy objects were equal)."""
  config, params, token_env, _, _ = reference
  make = lambda **kw: policies.ReferencePolicy(config, VOCAB, token_env, max_steps=2, **kw)
  run = lambda policy: np.asarray(sim_agents.realism_rollouts(
      policy, params, scenes, jax.random.key(0), 2, env=BARE, vocab=VOCAB, num_steps=2,
      jit_options=FAST).x)
  greedy = run(make(top_k=1))
  sampled = run(make(top_k=K, temperature=4.0))
  # Greedy rollouts ignore their keys; sampling from all K tokens at a high temperature
  # does not.
  np.testing.assert_array_equal(greedy[0], greedy[1])
  assert np.any(sampled[0] != sampled[1]) and np.any(sampled != greedy)
  # An equal policy (a new object) reuses its compiled function.
  hits = sim_agents._realism_fn.cache_info().hits
  np.testing.assert_array_equal(run(make(top_k=1)), greedy)
  assert sim_agents._realism_fn.cache_info().hits == hits + 1


# ------------------------------------------------------------------ learned policy
@pytest.fixture(scope='module')
def learned(tmp_path_factory):
  config = spacer_configs.get_config('tiny,ppo')
  vocab = primitive_vocabulary(config.tokens.num_tokens)
  path = str(tmp_path_factory.mktemp('vocab') / 'vocab.npz')
  save_vocabulary(path, vocab, {'source': 'test primitives'})
  config.tokens.vocabulary = path
  selfplay = factory.make_selfplay(config, vocab)
  # Parameters depend on the observation's feature sizes only, not on a scene.
  params = jax.jit(selfplay.policy.init)(jax.random.key(0),
                                            policies.example_observation(selfplay.obs_config))
  optimizer = spacer_train.make_optimizer(spacer_train.PPOConfig())
  state = spacer_train.TrainState(params=params, opt_state=optimizer.init(params),
                                  rng=jax.random.PRNGKey(1), step=jnp.zeros((), jnp.int32))
  return config, vocab, selfplay, state


def test_learned_policy_runs_and_never_removes_agents(learned, scenes):
  config, vocab, selfplay, train_state = learned
  policy = policies.LearnedPolicy(selfplay, goals='visible', variant='ppo')
  assert policy.name == 'ppo'
  run = closed_loop_fn(policy, env=BARE, vocab=vocab, num_steps=6,
                       jit_options=FAST)
  a = run(train_state.params, scenes, jax.random.key(1))
  b = run(train_state.params, scenes, jax.random.key(1))
  c = run(train_state.params, scenes, jax.random.key(2))
  ta, tb, tc = (_np(r.final_state.sim_trajectory) for r in (a, b, c))
  np.testing.assert_array_equal(ta.x, tb.x)
  assert np.any(ta.x != tc.x)
  # Every object valid at the current step is still there after 6 decisions (a token
  # policy never invalidates an agent, whatever happened to it).
  present = ta.valid[..., 10]
  assert ta.valid[present][:, 10:23].all()
  assert policy.num_params() == policy.num_params(train_state.params) > 1000


def test_learned_policy_top_k_sampling(learned, scenes):
  """top-1 sampling is greedy; top-k draws only among each agent's k likeliest tokens."""
  config, vocab, selfplay, train_state = learned
  state = jax.jit(BARE.reset)(scenes)
  greedy = policies.LearnedPolicy(selfplay, decoding=GREEDY, goals='visible')
  carry = greedy.init(None, state, jax.random.key(0))
  propose = jax.jit(lambda p, pol, key: pol.propose(train_state.params, carry, state, key),
                    static_argnums=1)
  want = _np(propose(None, greedy, jax.random.key(3)))
  got = _np(propose(None, dataclasses.replace(greedy, decoding=Decoding(top_k=1)),
                    jax.random.key(3)))
  np.testing.assert_array_equal(got.poses, want.poses)
  # Settings are part of the policy's equality (a static argument of compiled code).
  assert greedy == policies.LearnedPolicy(selfplay, decoding=Decoding(top_k=1), goals='visible')
  for other in (dataclasses.replace(greedy, decoding=SAMPLE),
                dataclasses.replace(greedy, goals='hidden'),
                dataclasses.replace(greedy, decoding=Decoding(top_k=3)),
                dataclasses.replace(greedy, decoding=Decoding(top_k=3, temperature=0.5))):
    assert other != greedy and hash(other) != hash(greedy)
  # Every top-3 draw executes one of the agent's 3 likeliest tokens.
  alive = state.object_metadata.is_controlled & state.current_sim_trajectory.valid[..., 0]
  worlds = Worlds(state=state, road=carry.road, goal=carry.goal, history=None)
  obs = selfplay.observe(worlds, state, AgentStatus.create(alive), carry.goal_visible)
  _, _, _, logits = selfplay.act(train_state.params, obs, jax.random.key(0))
  top3 = jax.lax.top_k(logits, 3)[1]
  candidates = np.stack([np.asarray(selfplay.token_env.execute(state, top3[..., j])[0])
                         for j in range(3)])  # (3, B, N, S, 3)
  top_k = dataclasses.replace(greedy, decoding=Decoding(top_k=3))
  alive = np.asarray(alive)
  for key in range(4):
    poses = np.asarray(propose(None, top_k, jax.random.key(key)).poses)
    hit = np.any(np.abs(candidates - poses[None]).max((-1, -2)) < 1e-5, 0)
    assert hit[alive].all()
  with pytest.raises(ValueError, match='top_k'):
    Decoding(top_k=-1)
  with pytest.raises(TypeError, match='Decoding'):
    policies.LearnedPolicy(selfplay, decoding=5)


def test_load_learned_policy_from_a_workdir(learned, tmp_path):
  config, vocab, selfplay, train_state = learned
  (tmp_path / 'config.json').write_text(config.to_json_best_effort(indent=2))
  ckpt = Checkpointer(str(tmp_path / 'checkpoints'))
  ckpt.save(4, train_state, {'iteration': 4})
  ckpt.close()
  policy, params = policies.load_policy(f'ppo:{tmp_path}', greedy=True)
  assert isinstance(policy, policies.LearnedPolicy) and policy.decoding == GREEDY
  assert policy.vocab.num_tokens == config.tokens.num_tokens
  for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(train_state.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  with pytest.raises(ValueError, match=r"holds a 'ppo' run, not 'spacer'"):
    policies.load_policy(f'spacer:{tmp_path}')
  config.policy.width = 48
  (tmp_path / 'config.json').write_text(config.to_json_best_effort(indent=2))
  with pytest.raises(ValueError, match='does not hold parameters of the policy'):
    policies.load_policy(f'ppo:{tmp_path}')


def test_load_policy_specs_and_errors(reference, tmp_path):
  config, params, _, _, _ = reference
  for spec, cls in [('log_replay', policies.LogReplayPolicy),
                    ('constant_velocity', policies.ConstantVelocityPolicy),
                    ('idm', policies.IDMPolicy)]:
    policy, p = policies.load_policy(spec)
    assert isinstance(policy, cls) and p is None and policy.num_params() == 0
  vocab_path = str(tmp_path / 'vocab.npz')
  save_vocabulary(vocab_path, VOCAB, {'source': 'test primitives'})
  save_reference(str(tmp_path / 'ref'), config, params, vocab_path)
  policy, loaded = policies.load_policy(f'reference:{tmp_path / "ref"}', top_k=3)
  assert isinstance(policy, policies.ReferencePolicy) and policy.top_k == 3
  assert policy.config == config and policy.vocab.num_tokens == K
  np.testing.assert_array_equal(np.asarray(policy.vocab.poses), np.asarray(VOCAB.poses))
  for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  with pytest.raises(ValueError, match='predicts 16 tokens but the vocabulary given has 32'):
    policies.load_policy(f'reference:{tmp_path / "ref"}', vocab=primitive_vocabulary(32))
  with pytest.raises(ValueError, match='unknown policy spec'):
    policies.load_policy('bogus')
  with pytest.raises(ValueError, match='takes no path'):
    policies.load_policy('idm:/tmp')
  with pytest.raises(ValueError, match='needs a path'):
    policies.load_policy('reference')
  with pytest.raises(FileNotFoundError, match='does not exist'):
    policies.load_policy(f'spacer:{tmp_path / "missing"}')
  with pytest.raises(FileNotFoundError, match='no config.json'):
    policies.load_policy(f'hr_ppo:{tmp_path}')
  # The lazy re-export from the runner module.
  assert sim_agents.LogReplayPolicy is policies.LogReplayPolicy


# ------------------------------------------------------------------ realism
@pytest.mark.slow
def test_realism_of_log_replay_beats_constant_velocity(scenes, scripted):
  options = small_realism_options(max_evaluated_objects=9, road_edge_fallback=64,
                                  red_light_checks=16)
  log, cv = (aggregate(compute_realism(scenes, scripted[name], options=options))
             for name in ('log_replay', 'constant_velocity'))
  assert float(log.meta_metric) > float(cv.meta_metric) + 0.2, (log.meta_metric,
                                                                 cv.meta_metric)
  assert float(log.min_ade) < 1e-4 < float(cv.min_ade)


def test_motion_checks_shapes():
  m = Motion(jnp.zeros((2, 4, 2, 3)), jnp.zeros((2, 4, 2, 2)), jnp.ones((2, 4), bool))
  m.check((2,), 4, 2)
  assert m.substep_valid().shape == (2, 4, 2)
  with pytest.raises(ValueError, match=r'Motion.valid has shape \(2, 3\)'):
    Motion(m.poses, m.velocities, jnp.ones((2, 3), bool)).check((2,), 4, 2)
  with pytest.raises(ValueError, match=r'Motion.velocities has shape'):
    Motion(m.poses, m.poses, m.valid).check((2,), 4, 2)


def test_reference_policy_takes_per_type_decoding(reference):
  config, _, token_env, policy, _ = reference
  per_type = policies.ReferencePolicy(config, VOCAB, token_env, top_k=[TOP_K, 1, TOP_K],
                                      temperature=(TEMPERATURE, 1.0, TEMPERATURE),
                                      max_steps=STEPS)
  assert per_type.top_k == (TOP_K, 1, TOP_K)  # stored as a tuple: hashable, static
  assert hash(per_type) != hash(policy) and per_type != policy
  with pytest.raises(ValueError, match='top_k'):
    policies.ReferencePolicy(config, VOCAB, token_env, top_k=(TOP_K, 0, TOP_K))
  with pytest.raises(ValueError, match='temperature'):
    policies.ReferencePolicy(config, VOCAB, token_env, temperature=(1.0, 1.0))
