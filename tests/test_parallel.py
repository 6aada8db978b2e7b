"""Scale-out: N devices train like one, a 2-process run checkpoints and resumes, and the
mesh / sharding / multi-process helpers behave.

The multi-device runs need the simulated CPU device count fixed before JAX starts, so
they run in subprocesses on a tiny PPO config (8 worlds drawn from a pool of 16, so the
block-wise world selection is exercised; 16 slots, 10 policy steps, 2 train steps per
iteration): the ``train_spacer`` binary as 2 processes for 1 iteration on 2 x 2
devices, then resumed for a second iteration on 2 x 4 devices, against the same 2
iterations on 1 device (``tests/parallel_helper.py``). XLA's backend optimisation is
turned down in those processes to halve compile times; the whole file still takes a
few minutes on a loaded 2-core CPU (every process traces and compiles the full step).
"""

import json
import os
import socket
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from jax.sharding import AbstractMesh

from spacer_jax import parallel
from spacer_jax.spacer import train as train_lib
from spacer_jax.training import Checkpointer, MetricLogger

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# As many held-out as pool scenes: one compiled `prepare` serves both.
SETTINGS = {'reference.checkpoint': 'random', 'env.num_worlds': 8, 'data.pool_size': 16,
            'data.num_train_scenarios': 16, 'data.num_eval_scenarios': 16,
            'train.checkpoint_every': 1, 'train.video_every': 0}
VARIANT = 'tiny,ppo'
TIMEOUT_S = 600


def _env(devices: int) -> dict:
  env = dict(os.environ)
  env.update(
      JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2',
      XLA_FLAGS=(f'--xla_force_host_platform_device_count={devices} '
                 '--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true'),
      PYTHONPATH=os.pathsep.join([ROOT, env.get('PYTHONPATH', '')]),
      # The resumed run recompiles the same programs: share the tests' compile cache.
      JAX_COMPILATION_CACHE_DIR=os.environ.get(
          'SPACER_JAX_TEST_JIT_CACHE', os.path.join(tempfile.gettempdir(),
                                                    'spacer_jax_jit_cache')),
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='1')
  return env


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _run_two_processes(workdir: str, iterations: int, devices: int, logs: str
                       ) -> list[str]:
  """The train_spacer binary as 2 processes x ``devices`` CPU devices each."""
  port = _free_port()
  # Evaluation (sharded) only at the end of the resumed run.
  settings = dict(SETTINGS, **{'train.max_iterations': iterations,
                               'train.eval_every': 2 if iterations == 2 else 0})
  command = [sys.executable, '-m', 'experiments.train_spacer',
             f'--config=experiments/configs/spacer.py:{VARIANT}', f'--workdir={workdir}',
             '--distributed', f'--coordinator_address=localhost:{port}', '--num_processes=2']
  command += [f'--config.{k}={v}' for k, v in settings.items()]
  procs, paths = [], []
  for i in range(2):
    paths.append(os.path.join(logs, f'process{i}_{iterations}.log'))
    with open(paths[-1], 'w') as out:  # Files, not pipes: a full pipe could deadlock.
      procs.append(subprocess.Popen(command + [f'--process_id={i}'], cwd=ROOT,
                                    env=_env(devices), stdout=out,
                                    stderr=subprocess.STDOUT))
  try:
    codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  outputs = [open(p).read() for p in paths]
  for i, (code, text) in enumerate(zip(codes, outputs)):
    assert code == 0, f'process {i} exited with {code}:\n{text[-3000:]}'
  return outputs


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """The 2-process run (iteration 1 on 4 devices, resumed for iteration 2 on 8) and,
  alongside it (its processes leave a core idle while they wait for each other), the
  same 2 iterations on 1 device; returns their directories and logs."""
  root = tmp_path_factory.mktemp('parallel')
  settings = dict(SETTINGS, **{'variant': VARIANT, 'train.max_iterations': 2,
                               'train.eval_every': 0})
  log = os.path.join(str(root), 'single.log')
  with open(log, 'w') as out:
    single = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'tests', 'parallel_helper.py'), str(root),
         json.dumps(settings), '1'], cwd=ROOT, env=_env(1), stdout=out,
        stderr=subprocess.STDOUT)
  try:
    two = str(root / 'two_process')
    first = _run_two_processes(two, 1, 2, str(root))
    second = _run_two_processes(two, 2, 4, str(root))
    code = single.wait(timeout=TIMEOUT_S)
  finally:
    if single.poll() is None:
      single.kill()
  output = open(log).read()
  assert code == 0, output[-3000:]
  return {'two': two, 'first': first, 'second': second, 'mesh1': str(root / 'mesh1'),
          'single': output}


def _train_rows(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  return [r for r in rows if 'loss' in r]


@pytest.mark.slow
def test_two_process_run_checkpoints_resumes_and_only_process_0_writes(runs):
  first, second = runs['first'], runs['second']
  assert 'on 4 device(s), 2 process(es)' in first[0]
  assert 'on 8 device(s), 2 process(es)' in second[0]
  assert 'resumed from' in second[0] and 'at iteration 1' in second[0]
  for out in first + second:
    assert 'Traceback' not in out
  # Process 1 trains silently; process 0 logged every iteration exactly once.
  assert 'step 1/1' not in first[1] and 'step 2/2' not in second[1]
  assert 'step 1/1' in first[0] and 'step 2/2' in second[0]
  rows = _train_rows(runs['two'])
  assert [r['step'] for r in rows] == [1, 2]
  assert all(np.isfinite(r['loss']) for r in rows)
  with open(os.path.join(runs['two'], 'metrics.jsonl')) as f:
    evals = [json.loads(line) for line in f if 'eval/goal_rate' in line]
  assert [r['step'] for r in evals] == [2]  # The sharded evaluation ran.
  for name in ('final_metrics.json', 'config.json', 'tb'):
    assert os.path.exists(os.path.join(runs['two'], name)), name
  assert Checkpointer(os.path.join(runs['two'], 'checkpoints')).latest_step() == 2


@pytest.mark.slow
def test_4_and_8_devices_train_like_1(runs):
  """Iteration 1 on 4 devices and iteration 2 (resumed from the 4-device checkpoint) on
  8 devices give the parameters and metrics of 2 iterations on 1 device.

  Tolerance: the runs differ only in the order of floating-point sums (per-device partial
  sums, then an all-reduce), about 1e-7 relative per reduction. After 4 train steps of
  2 epochs x 2 Adam updates (lr 3e-4) parameters agree to ~1e-7 in practice; the 2e-6
  bound leaves room for that while any real sharding error (another world picked, a
  shard's agent-steps dropped, gradients not averaged over devices) changes the Adam
  updates themselves, ~lr = 3e-4 per coordinate.
  """
  assert 'on 1 device(s), 1 process(es)' in runs['single']
  states = [Checkpointer(os.path.join(runs[k], 'checkpoints')).restore(None)
            for k in ('mesh1', 'two')]
  assert [s[0] for s in states] == [2, 2]
  reference, leaves = (jax.tree_util.tree_leaves(s[1]) for s in states)
  assert len(leaves) == len(reference)
  for a, b in zip(reference, leaves):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=2e-6, rtol=0)
  single, multi = _train_rows(runs['mesh1']), _train_rows(runs['two'])
  assert len(single) == len(multi) == 2
  for r, o in zip(single, multi):  # Row 1: 4 devices; row 2: 8 devices.
    for key in ('loss', 'goal_rate', 'collision_rate', 'kl_ref', 'agent_steps'):
      np.testing.assert_allclose(o[key], r[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_realism_rollouts_split_over_4_devices_match_1():
  """The evaluation's realism rollouts (an untrained reference policy sampling tokens,
  8 rollouts x 2 scenes x 4 decision steps) give the same trajectories when split over
  4 simulated devices as on one; the rollouts do differ from each other, so the keys
  reach the right rollouts."""
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'tests', 'parallel_helper.py'), '--realism', '4'],
      cwd=ROOT, env=_env(4), capture_output=True, text=True, timeout=TIMEOUT_S)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result['shape'] == [8, 2, 16, 80]
  assert result['valid_equal']
  assert result['max_difference'] < 1e-4
  assert result['spread_between_rollouts'] > 0.05


# --------------------------------------------------------------------------- in-process
@pytest.mark.parametrize('pool_size,num_worlds', [(16, 8), (6, 4), (4, 8), (5, 5)])
def test_world_index_is_a_stratified_draw(pool_size, num_worlds):
  keys = jax.random.split(jax.random.PRNGKey(0), 400)
  draws = np.asarray(jax.jit(jax.vmap(
      lambda k: train_lib.world_index(k, pool_size, num_worlds)))(keys))
  assert draws.shape == (400, num_worlds)
  blocks = np.gcd(pool_size, num_worlds)
  rows, picks = pool_size // blocks, num_worlds // blocks
  for b in range(blocks):  # Each block's worlds come from the same block of the pool.
    chosen = draws[:, b * picks:(b + 1) * picks]
    assert np.all((chosen >= b * rows) & (chosen < (b + 1) * rows))
    if rows >= picks:  # Without replacement.
      assert all(len(set(c.tolist())) == picks for c in chosen)
  if pool_size == num_worlds:
    np.testing.assert_array_equal(draws, np.broadcast_to(np.arange(num_worlds), draws.shape))
  # Every pool row is used equally often (W / P per draw), as in a uniform draw.
  counts = np.bincount(draws.reshape(-1), minlength=pool_size)
  np.testing.assert_allclose(counts / 400, num_worlds / pool_size, atol=0.1)
  assert len({tuple(d) for d in draws}) > 1 or rows == 1  # The key matters if it can.


@struct.dataclass
class _Pool:
  goal: jax.Array
  other: jax.Array


def test_sample_worlds_gathers_the_drawn_rows_with_or_without_a_mesh():
  pool = _Pool(goal=jnp.arange(16 * 3 * 2.0).reshape(16, 3, 2), other=jnp.arange(16))
  key = jax.random.PRNGKey(1)
  expected = np.asarray(train_lib.world_index(key, 16, 8))
  mesh = parallel.make_mesh(1)
  for m in (None, mesh):
    worlds = jax.jit(lambda p, k, m=m: train_lib.sample_worlds(p, k, 8, m))(pool, key)
    np.testing.assert_array_equal(np.asarray(worlds.other), expected)
    np.testing.assert_array_equal(np.asarray(worlds.goal), np.asarray(pool.goal)[expected])
  same = train_lib.sample_worlds(pool, key, 16)
  np.testing.assert_array_equal(np.asarray(same.other), np.arange(16))  # P == W: as is.


def test_sizes_not_divisible_by_the_devices_are_named():
  mesh = AbstractMesh((4,), (parallel.DATA_AXIS,))
  parallel.check_divisible(mesh, num_worlds=8, pool_size=300)
  with pytest.raises(ValueError, match=r'env.num_worlds=6 not divisible by the 4 devices'):
    parallel.check_divisible(mesh, **{'env.num_worlds': 6, 'data.pool_size': 8})
  with pytest.raises(ValueError, match='pool_size=6'):
    train_lib.sample_worlds(_Pool(goal=jnp.zeros((6, 2)), other=jnp.zeros(6)),
                            jax.random.PRNGKey(0), 4, mesh)
  with pytest.raises(ValueError, match=f'num_devices={len(jax.devices()) + 4}'):
    parallel.make_mesh(len(jax.devices()) + 4)


def test_host_to_mesh_helpers_round_trip():
  mesh = parallel.make_mesh(0)
  n = parallel.num_shards(mesh)
  rows = parallel.process_rows(4 * n, mesh)
  np.testing.assert_array_equal(rows, np.arange(4 * n))  # One process holds every row.
  tree = {'a': np.arange(4 * n * 3).reshape(4 * n, 3), 'b': np.arange(4 * n) > 1}
  sharded = parallel.shard_batch(lambda ids: jax.tree_util.tree_map(lambda x: x[ids], tree),
                                 4 * n, mesh)
  assert sharded['a'].sharding == parallel.batch_sharding(mesh)
  for k in tree:
    np.testing.assert_array_equal(parallel.to_host(sharded)[k], tree[k])
  first = parallel.first_local_rows(sharded)
  np.testing.assert_array_equal(np.asarray(first['a']), tree['a'][:1])
  replicated = parallel.replicate({'p': jnp.ones(3), 'none': None}, mesh)
  assert replicated['p'].sharding.is_fully_replicated and replicated['none'] is None
  with pytest.raises(ValueError, match='leading axis 2'):
    parallel.shard_rows({'a': np.zeros((3, 1))}, np.arange(2), 2, mesh)
  constrained = jax.jit(lambda t: parallel.constrain(t, mesh, axis=1))(
      {'x': jnp.ones((2, 4 * n)), 'scalar': jnp.ones(())})
  assert constrained['x'].shape == (2, 4 * n)
  assert parallel.constrain(tree, None) is tree


def test_maybe_initialize_is_off_unless_asked_and_checks_ids(monkeypatch):
  monkeypatch.delenv(parallel.distributed.ENV_SWITCH, raising=False)
  assert not parallel.distributed_requested()
  assert parallel.maybe_initialize() is False
  monkeypatch.setenv(parallel.distributed.ENV_SWITCH, '1')
  assert parallel.distributed_requested()
  with pytest.raises(ValueError, match=r'process_id=3 not in \[0, num_processes=2\)'):
    parallel.maybe_initialize(num_processes=2, process_id=3)
  monkeypatch.setenv('JAX_NUM_PROCESSES', 'two')
  with pytest.raises(ValueError, match='JAX_NUM_PROCESSES'):
    parallel.maybe_initialize()


def test_host_rng_streams_depend_on_the_process():
  assert jax.process_index() == 0
  a = parallel.host_rng(7).integers(1 << 30, size=4)
  np.testing.assert_array_equal(a, np.random.default_rng([7, 0]).integers(1 << 30, size=4))
  assert not np.array_equal(a, np.random.default_rng([7, 1]).integers(1 << 30, size=4))


def test_inactive_logger_writes_nothing_but_still_guards_nan(tmp_path):
  logger = MetricLogger(str(tmp_path / 'run'), active=False)
  assert logger.write(1, {'loss': np.float32(0.5)}) == {'loss': 0.5}
  with pytest.raises(FloatingPointError, match='loss'):
    logger.write(2, {'loss': np.nan})
  logger.close()
  assert not (tmp_path / 'run').exists()
