"""The compiled SPACER train step: it learns, anchors, resumes identically, never retraces.

A tiny world (16 slots, 4000 map points, K = 32 tokens, 10 policy steps) keeps each
compile to seconds; the scenario pool is shared by the module.
"""

import functools
import json
import os
import shutil

import jax
import numpy as np
import pytest

from experiments.configs import spacer as spacer_configs
from spacer_jax.apps import train_spacer
from spacer_jax.data.generator import GeneratorConfig, generate_batch
from spacer_jax.models import build_reference_inputs, init_reference, reference_config
from spacer_jax.models.default_vocabulary import build_vocabulary_from_generator
from spacer_jax.spacer import factory
from spacer_jax.spacer import train as train_lib
from spacer_jax.spacer.acting import GREEDY
from spacer_jax.spacer.losses import LossConfig
from spacer_jax.tokens import BuildConfig
from spacer_jax.training import runs

# 6000 points (the cpu recipes): 4000 hold the map around only a few objects of a fast
# merge (the generator logs only those), too few agents for the learning test.
GEN = GeneratorConfig(num_objects=16, num_roadgraph_points=6000)


@pytest.fixture(scope='module')
def setup():
  config = spacer_configs.get_config('tiny')
  vocab, _ = build_vocabulary_from_generator(
      range(2), GEN, BuildConfig(num_tokens=config.tokens.num_tokens, max_segments=1500))
  selfplay = factory.make_selfplay(config, vocab)
  pool = jax.jit(selfplay.prepare)(generate_batch(range(50, 54), GEN))
  rcfg = reference_config('nano', hidden=32, num_tokens=vocab.num_tokens,
                          num_map_segments=32, k_map=8, k_agent=4, k_map_self=4)
  inputs = build_reference_inputs(pool.state, pool.history.token_ids, pool.history.poses,
                                  pool.history.valid, config=rcfg)
  ref_params = init_reference(rcfg, jax.random.PRNGKey(1), inputs)
  # A peaked reference (a fixed random preference over tokens per type), far from the
  # near-uniform initial policy, so that KL(pi || p_ref) has somewhere to fall.
  ref_params = jax.tree_util.tree_map_with_path(
      lambda path, x: (3.0 * jax.random.normal(jax.random.PRNGKey(5), x.shape)
                       if 'out_bias' in jax.tree_util.keystr(path) else x), ref_params)
  return config, selfplay, pool, rcfg, ref_params


def _trainer(setup, anchor_kind='reference', kl_coef=0.1, alpha=0.01, steps=1, lr=3e-4,
             entropy_coef=1e-4, critic_warmup_steps=0):
  config, selfplay, pool, rcfg, ref_params = setup
  anchor = (train_lib.Anchor('reference', rcfg, alpha) if anchor_kind == 'reference'
            else train_lib.Anchor('none'))
  ppo = train_lib.PPOConfig(num_worlds=4, epochs=2, num_minibatches=2, lr=lr,
                            critic_warmup_steps=critic_warmup_steps)
  opt = train_lib.make_optimizer(ppo)
  state = train_lib.init_train_state(selfplay, opt, pool, jax.random.PRNGKey(0))
  step = train_lib.make_train_step(selfplay, anchor,
                                   LossConfig(kl_coef=kl_coef, entropy_coef=entropy_coef),
                                   ppo, opt)
  return state, step


def test_episode_shapes_and_anchor_alignment(setup):
  config, selfplay, pool, rcfg, ref_params = setup
  worlds = jax.tree_util.tree_map(lambda x: x[:2], pool)
  policy_params = train_lib.init_train_state(
      selfplay, train_lib.make_optimizer(train_lib.PPOConfig()), pool,
      jax.random.PRNGKey(0)).params
  episode = jax.jit(selfplay.rollout)(policy_params, worlds, jax.random.PRNGKey(2))
  t, n = selfplay.num_steps, 16
  assert episode.actions.shape == (t, 2, n)
  assert episode.obs.ego.shape[:3] == (t, 2, n)
  # Only controlled agents act, and the final state is S * T steps later.
  assert not np.any(np.asarray(episode.acted) & ~np.asarray(episode.controlled)[None])
  assert np.all(np.asarray(episode.final_state.timestep)
                == selfplay.start_step + 2 * t)
  ids, poses, valid = jax.jit(selfplay.anchor_tokens)(worlds, episode)
  h = selfplay.history_tokens
  assert ids.shape == (2, n, h + t) and poses.shape == (2, n, h + t + 1, 3)
  # The sequence holds exactly the sampled tokens where agents acted.
  acted = np.moveaxis(np.asarray(episode.acted), 0, -1)
  np.testing.assert_array_equal(np.asarray(ids)[..., h:][acted],
                                np.moveaxis(np.asarray(episode.actions), 0, -1)[acted])
  # Boundary poses after the history are the simulated poses.
  sim = episode.final_state.sim_trajectory
  np.testing.assert_allclose(np.asarray(poses)[..., -1, 0][np.asarray(sim.valid[..., -1])],
                             np.asarray(sim.x[..., selfplay.start_step + 2 * t])[
                                 np.asarray(sim.valid[..., -1])], atol=1e-5)
  lp = jax.jit(functools.partial(train_lib.anchor_log_probs, selfplay,
                                 train_lib.Anchor('reference', rcfg)))(ref_params, worlds,
                                                                       episode)
  assert lp.shape == (t, 2, n, selfplay.policy.num_tokens)
  np.testing.assert_allclose(np.exp(np.asarray(lp)).sum(-1), 1.0, atol=1e-4)
  # An anchor temperature below 1 sharpens the same distribution (same argmax, lower
  # entropy), still normalised.
  sharp = jax.jit(functools.partial(
      train_lib.anchor_log_probs, selfplay,
      train_lib.Anchor('reference', rcfg, temperature=0.5)))(ref_params, worlds, episode)
  np.testing.assert_allclose(np.exp(np.asarray(sharp)).sum(-1), 1.0, atol=1e-4)
  np.testing.assert_allclose(np.asarray(sharp),
                             np.asarray(jax.nn.log_softmax(2.0 * lp, -1)), atol=1e-4)
  # The anchor is restricted to each agent's feasible tokens (the others: -inf).
  assert np.all(np.isneginf(np.asarray(lp))[~np.asarray(episode.obs.feasible)])
  entropy = lambda x: -np.where(np.isfinite(x), np.exp(x) * np.nan_to_num(x), 0.0).sum(
      -1).mean()
  assert entropy(np.asarray(sharp)) < entropy(np.asarray(lp))
  with pytest.raises(ValueError, match='temperature'):
    train_lib.Anchor('policy', temperature=0.5)


@pytest.fixture(scope='module')
def anchored(setup):
  """One compiled iteration (5 steps) of SPACER with a strong KL weight, traced once."""
  config, selfplay, pool, rcfg, ref_params = setup
  state, step = _trainer(setup, kl_coef=1.0, alpha=0.01, lr=3e-3)
  traces = []

  def counted(s, p, a):
    traces.append(1)
    return train_lib.make_train_iteration(step, 5)(s, p, a)

  return state, jax.jit(counted, donate_argnums=0), traces


def test_train_step_compiles_once_and_kl_to_reference_falls(setup, anchored):
  """Retrace guard, finite metrics, and with beta > 0 the policy moves to p_ref."""
  config, selfplay, pool, rcfg, ref_params = setup
  state, iteration, traces = anchored
  kls = []
  for _ in range(4):
    state, metrics = iteration(state, pool, ref_params)
    kls.append(float(metrics['kl_ref']))
  assert len(traces) == 1
  assert int(state.step) == 20
  for key in ('loss', 'kl_ref', 'entropy', 'goal_rate', 'collision_rate',
              'anchor_log_likelihood', 'anchor_entropy', 'agent_steps'):
    assert np.isfinite(float(metrics[key])), key
  assert kls[0] > 0.5, kls  # The peaked reference starts far from the policy.
  assert kls[-1] < 0.6 * kls[0], kls


def test_critic_warmup_moves_the_critic_head_alone_then_everything(setup):
  _, _, pool, _, ref_params = setup
  state, step = _trainer(setup, critic_warmup_steps=1)
  step = jax.jit(step)
  first, _ = step(state, pool, ref_params)
  second, _ = step(first, pool, ref_params)
  moved = lambda a, b: jax.tree_util.tree_map_with_path(
      lambda path, x, y: (jax.tree_util.keystr(path), bool(np.any(np.asarray(x != y)))),
      a.params, b.params)
  changes = dict(jax.tree_util.tree_leaves(moved(state, first), is_leaf=lambda x: (
      isinstance(x, tuple))))
  assert any(v for k, v in changes.items() if "'critic'" in k), changes
  assert not any(v for k, v in changes.items() if "'critic'" not in k), changes
  after = dict(jax.tree_util.tree_leaves(moved(first, second), is_leaf=lambda x: (
      isinstance(x, tuple))))
  assert all(after.values()), after  # Step 1 is past the warm-up: everything moves.


def test_ppo_learns_on_tiny_scenarios(setup):
  """Task reward only: the goal rate rises and collisions + off-road fall."""
  config, selfplay, pool, rcfg, ref_params = setup
  state, step = _trainer(setup, anchor_kind='none', kl_coef=0.0, alpha=0.0, lr=3e-3,
                         entropy_coef=0.0)
  it = jax.jit(train_lib.make_train_iteration(step, 10), donate_argnums=0)
  evaluate = jax.jit(train_lib.make_evaluate(selfplay, decoding=GREEDY))
  before = evaluate(state.params, pool, jax.random.PRNGKey(9))
  for _ in range(6):
    state, _ = it(state, pool, None)
  after = evaluate(state.params, pool, jax.random.PRNGKey(9))
  score = lambda m: float(m['goal_rate'] - m['collision_rate'] - m['offroad_rate'])
  assert float(after['task_return']) > float(before['task_return']) + 0.05, (before, after)
  assert score(after) > score(before), (before, after)


def test_binary_resumes_identically(tmp_path, monkeypatch):
  """Two iterations, kill, two more == four straight (same parameters)."""
  def run(workdir, iters):
    config = spacer_configs.get_config('tiny')
    config.reference.checkpoint = 'random'
    config.train.max_iterations = iters
    config.train.checkpoint_every = 2
    config.train.eval_every = 0  # No evaluation: only the training path is compared.
    return train_spacer.train_and_evaluate(config, str(workdir))

  first = run(tmp_path / 'straight', 4)
  # Re-running the finished run changes nothing and returns its figures.
  straight = tmp_path / 'straight'
  files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in straight.rglob('*')
           if p.is_file()}
  again = run(straight, 4)
  assert again == pytest.approx({k: float(v) for k, v in first.items()})
  assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in straight.rglob('*')
          if p.is_file()} == files
  # A changed setting is refused by name before anything is written.
  changed = spacer_configs.get_config('tiny')
  changed.reference.checkpoint = 'random'
  changed.train.max_iterations = 6
  changed.ppo.lr = 1e-2
  with pytest.raises(runs.RunConfigMismatch, match=r'ppo\.lr'):
    train_spacer.train_and_evaluate(changed, str(straight))
  assert (straight / 'config.json').read_bytes() == files[straight / 'config.json'][1]
  run(tmp_path / 'resumed', 2)
  last = run(tmp_path / 'resumed', 4)
  assert np.isfinite(last['loss'])
  from spacer_jax.training import Checkpointer
  a = Checkpointer(str(tmp_path / 'straight' / 'checkpoints')).restore(None)
  b = Checkpointer(str(tmp_path / 'resumed' / 'checkpoints')).restore(None)
  assert a[0] == b[0] == 4
  for x, y in zip(jax.tree_util.tree_leaves(a[1]), jax.tree_util.tree_leaves(b[1])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert (tmp_path / 'resumed' / 'tb').is_dir()
  # config.json names the vocabulary file the run used (not '' = "the default").
  saved = json.loads((tmp_path / 'resumed' / 'config.json').read_text())
  vocab_path = saved['tokens']['vocabulary']
  assert os.path.isabs(vocab_path) and os.path.exists(vocab_path)
  assert b[2]['vocabulary'] == vocab_path
  # Resuming with another vocabulary is refused, naming both files.
  other = tmp_path / 'other_vocab.npz'
  shutil.copy(vocab_path, other)
  config = spacer_configs.get_config('tiny')
  config.reference.checkpoint = 'random'
  config.tokens.vocabulary = str(other)
  config.train.max_iterations = 5
  with pytest.raises(ValueError, match='other_vocab.npz'):
    train_spacer.train_and_evaluate(config, str(tmp_path / 'resumed'))


def test_hr_ppo_trains_its_bc_anchor_then_self_play(tmp_path):
  """The hr_ppo variant: BC policy trained (and checkpointed) first, then PPO with a
  forward KL to it; a second call reuses the finished BC run."""
  config = spacer_configs.get_config('tiny,hr_ppo')
  config.train.max_iterations = 1
  config.train.eval_every = 0
  config.bc.steps = 4
  config.bc.num_pools = 2  # Two pools of the (now 16-scene) training set, concatenated.
  config.data.num_train_scenarios = 16
  last = train_spacer.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(last['kl_ref']) and last['kl_ref'] >= 0.0
  from spacer_jax.spacer import bc
  params = bc.load_bc_policy(str(tmp_path / 'bc'))
  assert jax.tree_util.tree_leaves(params)


def test_bc_learning_rate_schedules():
  """bc.lr_schedule: constant keeps bc.lr, cosine reaches 0 at bc.steps; configs
  written before the field are constant; an unknown name is refused."""
  from spacer_jax.spacer import bc
  config = spacer_configs.get_config('tiny')
  config.bc.steps, config.bc.lr = 10, 0.5
  params = {'w': jax.numpy.zeros(())}
  grads = {'w': jax.numpy.ones(())}

  def moves(schedule):
    if schedule is None:
      del config.bc['lr_schedule']  # A config written before the field.
    else:
      config.bc.lr_schedule = schedule
    opt = bc.bc_optimizer(config)
    state = opt.init(params)
    out = []
    for _ in range(config.bc.steps):
      update, state = opt.update(grads, state, params)
      out.append(-float(update['w']))
    return out

  constant = moves('constant')
  np.testing.assert_allclose(constant, 0.5, rtol=1e-3)  # Adam's first steps move by lr.
  cosine = moves('cosine')
  assert cosine[0] == pytest.approx(0.5, rel=1e-3)
  assert all(a > b for a, b in zip(cosine, cosine[1:])) and cosine[-1] < 0.05
  np.testing.assert_allclose(moves(None), constant)
  config.bc.lr_schedule = 'linear'
  with pytest.raises(ValueError, match='bc.lr_schedule'):
    bc.bc_optimizer(config)


@pytest.mark.parametrize('n,m', [(10, 3), (12, 4), (9, 4), (8, 2)])
def test_minibatches_split_each_worlds_valid_agent_steps_evenly(n, m):
  rng = np.random.default_rng(n + m)
  valid = np.zeros((4, n), bool)
  for w, num_valid in enumerate([n, n // 2, 1, 0]):
    valid[w, rng.choice(n, num_valid, replace=False)] = True
  split = jax.jit(train_lib.minibatch_indices, static_argnums=2)
  index, in_mb = split(jax.numpy.asarray(valid), jax.random.PRNGKey(0), m)
  index, in_mb = np.asarray(index), np.asarray(in_mb)
  assert index.shape == in_mb.shape == (m, 4, -(-n // m))
  for w in range(4):
    used = index[:, w][in_mb[:, w]]
    assert sorted(used.tolist()) == np.flatnonzero(valid[w]).tolist()  # Each once.
    sizes = in_mb[:, w].sum(-1)
    assert sizes.max() - sizes.min() <= 1
  # A world's split does not depend on the other worlds (device-count independent).
  index2, in_mb2 = split(jax.numpy.asarray(valid[:2]), jax.random.PRNGKey(0), m)
  np.testing.assert_array_equal(np.asarray(index2), index[:, :2])
  np.testing.assert_array_equal(np.asarray(in_mb2), in_mb[:, :2])


def test_scenario_source_reads_files_once_and_refuses_missing_eval(tmp_path):
  from spacer_jax.data import generator, womd
  config = spacer_configs.get_config('tiny')
  gen = GeneratorConfig(num_objects=config.data.num_objects,
                        num_roadgraph_points=config.data.num_roadgraph_points)
  states = [generator.generate_scenario(s, gen) for s in range(5)]
  path = str(tmp_path / 'scenes.tfrecord')
  womd.write_records(path, [womd.state_to_example(s).SerializeToString() for s in states])
  config.data.files = path
  config.data.num_train_scenarios = 3
  config.data.num_eval_scenarios = 2
  config.data.pool_size = 4
  source = train_spacer.ScenarioSource(config)
  assert source.pool_indices(0) == [0, 1, 2, 0] and source.pool_indices(1) == [1, 2, 0, 1]
  pool, held_out = source.pool(0), source.eval()
  assert pool.shape == (4,) and held_out.shape == (2,)
  # Held-out scenes are records 3 and 4, not copies of training ones.
  np.testing.assert_allclose(np.asarray(held_out.log_trajectory.x[0]),
                             np.asarray(states[3].log_trajectory.x), atol=1e-3)
  np.testing.assert_allclose(np.asarray(pool.log_trajectory.x[3]),
                             np.asarray(states[0].log_trajectory.x), atol=1e-3)
  config.data.num_eval_scenarios = 3
  with pytest.raises(ValueError, match='held-out records'):
    train_spacer.ScenarioSource(config)


def test_anchor_weight_schedule():
  w = train_lib.AnchorWeights.create(0.001, 0.1, kl_coef_start=1.0, kl_warmup_steps=10)
  at = lambda s: float(w.kl_at(jax.numpy.int32(s)))
  np.testing.assert_allclose([at(0), at(5), at(10), at(50)], [1.0, 0.55, 0.1, 0.1],
                             rtol=1e-6)
  flat = train_lib.AnchorWeights.create(0.001, 0.1)
  assert float(flat.kl_at(jax.numpy.int32(0))) == pytest.approx(0.1)
  with pytest.raises(ValueError, match='kl_coef'):
    train_lib.AnchorWeights.create(0.0, -1.0)


def test_a_vmapped_sweep_trains_like_separate_runs(setup):
  """Alpha and beta are traced: two runs with other weights train side by side in one
  compiled call, each exactly as it trains alone (and weights=None is the static
  config's constant weights)."""
  config, selfplay, pool, rcfg, ref_params = setup
  state, step = _trainer(setup, kl_coef=0.1, alpha=0.01)
  iteration = train_lib.make_train_iteration(step, 1)
  rows = [train_lib.AnchorWeights.create(0.01, 0.1),
          train_lib.AnchorWeights.create(0.0, 1.0, kl_coef_start=2.0, kl_warmup_steps=4)]
  alone = [jax.jit(iteration)(state, pool, ref_params, w) for w in rows]
  default, _ = jax.jit(iteration)(state, pool, ref_params)
  for x, y in zip(jax.tree.leaves(default.params), jax.tree.leaves(alone[0][0].params)):
    # Up to float rounding: XLA folds constant weights into other instructions.
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-9)
  sweep = jax.jit(train_lib.make_sweep(iteration))
  states, metrics = sweep(train_lib.stack_runs([state, state]), pool, ref_params,
                          train_lib.stack_runs(rows))
  assert metrics['kl_coef'].shape == (2,)
  np.testing.assert_allclose(np.asarray(metrics['kl_coef']), [0.1, 2.0], rtol=1e-6)
  for i, (one, one_metrics) in enumerate(alone):
    np.testing.assert_allclose(float(metrics['return'][i]), float(one_metrics['return']),
                               rtol=1e-4)
    for x, y in zip(jax.tree.leaves(states.params), jax.tree.leaves(one.params)):
      np.testing.assert_allclose(np.asarray(x)[i], np.asarray(y), rtol=1e-3, atol=1e-5)
  # The two weightings really differ in what they learn.
  delta = [np.abs(np.asarray(x)[0] - np.asarray(x)[1]).max()
           for x in jax.tree.leaves(states.params)]
  assert max(delta) > 1e-6


def test_best_state_is_never_a_frozen_one(tmp_path):
  """Meta rewards a policy in which everyone stops (plain PPO: 0.767 at minADE 31 m):
  the freeze guard keeps the best moving state instead, and a resumed run knows it."""
  from spacer_jax.apps.train_spacer import BestCheckpoint
  (tmp_path / 'config.json').write_text('{}')
  state = {'w': np.zeros(3, np.float32)}
  val = lambda meta, ade: {'meta': meta, 'min_ade': ade}
  best = BestCheckpoint(str(tmp_path), max_min_ade=25.0)
  assert best.offer(0, state, val(0.663, 17.9))
  assert best.frozen(val(0.767, 31.4)) and not best.offer(10, state, val(0.767, 31.4))
  assert not best.offer(15, state, val(0.70, float('nan')))  # no minADE: not trusted
  assert not best.offer(20, state, val(0.60, 10.0))
  assert best.offer(40, state, val(0.669, 10.8))
  best.close()
  saved = json.loads((tmp_path / 'best' / 'best.json').read_text())
  assert saved['iteration'] == 40
  resumed = BestCheckpoint(str(tmp_path), max_min_ade=25.0)
  assert resumed.iteration == 40 and not resumed.offer(50, state, val(0.66, 9.0))
  # Without the guard meta alone decides.
  unguarded = BestCheckpoint(str(tmp_path / 'other'), max_min_ade=0.0)
  (tmp_path / 'other').mkdir()
  (tmp_path / 'other' / 'config.json').write_text('{}')
  assert unguarded.offer(0, state, val(0.663, 17.9))
  assert unguarded.offer(10, state, val(0.767, 31.4))
  unguarded.close()
