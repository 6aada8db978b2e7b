"""Host loop of SPACER / PPO / HR-PPO training: data, anchor, compiled iterations, logs.

``train_and_evaluate(config, workdir)`` builds everything from the config, resumes from
the newest checkpoint in ``workdir`` and runs compiled iterations of
``config.train.steps_per_iteration`` train steps; between iterations it logs, evaluates
on held-out scenarios, checkpoints and renders videos.

Determinism and resume: the scenario pool of iteration ``i`` is a function of
``i // refresh_every`` only, and the PRNG key lives in the train state, so a run killed
after a checkpoint and resumed continues exactly as if it had not stopped.

Scale-out: the run uses a ``'data'`` mesh over ``config.mesh.num_devices`` devices (all
by default; ``spacer_jax.parallel``). The pool and the held-out worlds are sharded over
it along the world axis, the train state and the anchor replicated. In a multi-process
run (``jax.distributed`` initialised by the binary) every process builds only the pool
rows its devices hold (generating or decoding just those scenarios), calls the
checkpointer (orbax coordinates the save), and only process 0 writes logs, videos and
reports. Results do not depend on the device or process count beyond float rounding.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from spacer_jax import parallel
from spacer_jax.data import generator
from spacer_jax.eval.policy_realism import take_scenes
from spacer_jax.models import ReferenceConfig, build_reference_inputs, init_reference
from spacer_jax.models.checkpoint import load_reference
from spacer_jax.sim.builders import stack_states
from spacer_jax.sim.datatypes import SimulatorState
from spacer_jax.spacer import train as train_lib
from spacer_jax.spacer.acting import Decoding
from spacer_jax.spacer.factory import load_vocab, make_selfplay, upgrade_config
from spacer_jax.spacer.losses import LossConfig
from spacer_jax.spacer.observation import ObservationConfig
from spacer_jax.spacer.policy import count_params
from spacer_jax.spacer.selfplay import SelfPlay, Worlds
from spacer_jax.training import Checkpointer, MetricLogger, format_duration, runs

PRINT_KEYS = ['agent_steps_per_s', 'goal_rate', 'collision_rate', 'offroad_rate', 'kl_ref',
              'entropy', 'return']


# --------------------------------------------------------------------------- pieces
def generator_config(config: ml_collections.ConfigDict) -> generator.GeneratorConfig:
  return generator.GeneratorConfig(num_objects=config.data.num_objects,
                                   num_roadgraph_points=config.data.num_roadgraph_points)


def pool_seeds(config: ml_collections.ConfigDict, refresh: int) -> list[int]:
  """Generator seeds of the pool used after ``refresh`` refreshes (cycles the train set)."""
  size, total = config.data.pool_size, config.data.num_train_scenarios
  return [config.seed * 1_000_003 + (refresh * size + i) % total for i in range(size)]


def eval_seeds(config: ml_collections.ConfigDict) -> list[int]:
  return [config.data.eval_seed_offset + i for i in range(config.data.num_eval_scenarios)]


class ScenarioSource:
  """The training pools and held-out scenes of a run: generated, or read from files.

  Generated (``data.files == ''``): pool ``r`` holds the generator seeds of
  :func:`pool_seeds`, held-out scenes the seeds of :func:`eval_seeds`.

  Files: the records of ``data.files`` are indexed once (:class:`RecordIndex`); the
  train set is its first ``data.num_train_scenarios`` records (all of them if there
  are fewer, with a note) and pool ``r`` cycles through it; held-out scenes are the
  first ``data.num_eval_scenarios`` records of ``data.eval_files``, or else the records
  after the train set. Asking for held-out scenes that do not exist is an error, never
  a silent substitute.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self._train = self._eval = None
    if not config.data.files:
      return
    from spacer_jax.data import womd
    self._train = womd.RecordIndex(womd.list_files(config.data.files))
    available = len(self._train)
    if not available:
      raise ValueError(f'data.files {config.data.files!r} holds no records.')
    self.num_train = min(config.data.num_train_scenarios, available)
    if config.data.eval_files:
      self._eval = womd.RecordIndex(womd.list_files(config.data.eval_files))
      self._eval_start = 0
    else:
      self._eval, self._eval_start = self._train, self.num_train
    eval_available = len(self._eval) - self._eval_start
    if eval_available < config.data.num_eval_scenarios:
      where = (f'data.eval_files {config.data.eval_files!r}' if config.data.eval_files
               else f'data.files {config.data.files!r} after its {self.num_train} train '
               'records')
      raise ValueError(f'{where} holds {eval_available} held-out records but '
                       f'data.num_eval_scenarios={config.data.num_eval_scenarios}; '
                       'lower num_train_scenarios / num_eval_scenarios or set '
                       'data.eval_files.')
    if self.num_train < config.data.num_train_scenarios:
      print(f'note: data.files holds {available} records; training cycles through '
            f'{self.num_train} (data.num_train_scenarios='
            f'{config.data.num_train_scenarios}).')

  def _decode(self, index, i: int) -> SimulatorState:
    from spacer_jax.data import womd
    # A bad record's error names its file (and a hint when the format is the other one).
    return womd.decode_indexed(index, i, self.config.data.format,
                               self.config.data.num_objects,
                               self.config.data.num_roadgraph_points)

  def pool_indices(self, refresh: int) -> list[int]:
    """Scenario ids of pool ``refresh``: generator seeds, or train record indices."""
    if self._train is None:
      return pool_seeds(self.config, refresh)
    size = self.config.data.pool_size
    return [(refresh * size + i) % self.num_train for i in range(size)]

  def scenarios(self, ids: list[int]) -> SimulatorState:
    """Batched scenarios for :meth:`pool_indices` ids."""
    if self._train is None:
      gen = generator_config(self.config)
      return stack_states([generator.generate_scenario(s, gen) for s in ids])
    return stack_states([self._decode(self._train, i) for i in ids])

  def pool(self, refresh: int) -> SimulatorState:
    return self.scenarios(self.pool_indices(refresh))

  def eval(self, rows: Optional[list[int]] = None) -> SimulatorState:
    """The held-out scenes ``rows`` (default all), batched ``(len(rows),)``."""
    rows = list(range(self.config.data.num_eval_scenarios)) if rows is None else rows
    if self._train is None:
      seeds = eval_seeds(self.config)
      return self.scenarios([seeds[r] for r in rows])
    return stack_states([self._decode(self._eval, self._eval_start + r) for r in rows])


def make_anchor(config: ml_collections.ConfigDict, reference: Any
                ) -> train_lib.Anchor:
  if config.variant == 'spacer':
    return train_lib.Anchor('reference', reference.config,
                            config.anchor.likelihood_weight,
                            temperature=config.anchor.temperature)
  if config.variant == 'hr_ppo':
    return train_lib.Anchor('policy')
  return train_lib.Anchor('none')


def anchor_weights(config: ml_collections.ConfigDict) -> train_lib.AnchorWeights:
  """The traced anchor weights of the ``anchor`` block (alpha, beta and its warm-up)."""
  a = config.anchor
  return train_lib.AnchorWeights.create(a.likelihood_weight, a.kl_coef,
                                        a.kl_warmup_factor * a.kl_coef, a.kl_warmup_steps)


@dataclasses.dataclass
class RandomReference:
  """An untrained reference (``--config.reference.checkpoint=random``): for smoke tests
  and throughput measurements only, never for learning."""

  config: ReferenceConfig
  params: Any


def load_or_init_reference(config: ml_collections.ConfigDict, selfplay: SelfPlay,
                           example: Worlds, vocab_path: str) -> Any:
  """The reference named by ``config.reference.checkpoint``.

  ``'random'`` initialises an untrained one of ``config.reference.size``; ``''`` uses
  the default reference (trained on the default synthetic data when absent).
  """
  from spacer_jax.models import reference_config
  path = config.reference.checkpoint
  if path == 'random':
    size = config.reference.size
    overrides = dict(num_tokens=selfplay.policy.num_tokens)
    if size == 'tiny':
      size = 'nano'
      overrides.update(hidden=32, num_map_segments=32, k_map=8, k_agent=4, k_map_self=4)
    rcfg = reference_config(size, **overrides)
    one = jax.tree_util.tree_map(lambda x: x[:1], example)
    inputs = build_reference_inputs(one.state, one.history.token_ids, one.history.poses,
                                    one.history.valid, config=rcfg)
    return RandomReference(rcfg, init_reference(rcfg, jax.random.PRNGKey(config.seed + 7),
                                                inputs))
  # Tiny configs chain on an empty cache: their default reference trains in seconds.
  variant = 'tiny' if config.reference.size == 'tiny' else 'cpu'
  if not path and jax.process_count() > 1:
    path = _trained_default_reference(selfplay.policy.num_tokens, variant)
  if not path:
    from spacer_jax.models.default import get_or_train_default_reference
    path = get_or_train_default_reference(num_tokens=selfplay.policy.num_tokens,
                                          variant=variant)
  reference = load_reference(path)
  if reference.config.num_tokens != selfplay.policy.num_tokens:
    raise ValueError(f'reference {path} predicts {reference.config.num_tokens} tokens but '
                     f'the vocabulary has {selfplay.policy.num_tokens}.')
  if os.path.abspath(reference.vocabulary_path) != os.path.abspath(vocab_path):
    print(f'note: reference {path} was trained on vocabulary {reference.vocabulary_path}; '
          f'training uses {vocab_path}.')
  return reference


def _trained_default_reference(num_tokens: int, variant: str = 'cpu') -> str:
  """The packaged or cached default reference; a multi-process run cannot train it
  (every process would), so it must exist already."""
  from spacer_jax.models.checkpoint import EXPORT_SUBDIR
  from spacer_jax.models.default import default_reference_dir, shipped_default_reference
  shipped = shipped_default_reference(num_tokens) if variant == 'cpu' else None
  if shipped is not None:
    return shipped
  workdir = default_reference_dir(num_tokens, variant)
  if not os.path.exists(os.path.join(workdir, 'final_metrics.json')):
    raise ValueError(f'reference.checkpoint is empty and the default reference '
                     f'({workdir}) is not trained yet; a multi-process run does not train '
                     'it: run the trainer once in a single process first, or pass '
                     '--reference_checkpoint.')
  return os.path.join(workdir, EXPORT_SUBDIR)


def run_plan(config: ml_collections.ConfigDict, num_tokens: int, max_iters: int,
             agent_steps_per_iter: int) -> str:
  """What the run will do, stage by stage, with rough costs: printed before any work."""
  if config.variant != 'spacer':
    reference = 'none (no anchor)'
  elif config.reference.checkpoint == 'random':
    reference = 'an untrained one (smoke tests only)'
  elif config.reference.checkpoint:
    reference = config.reference.checkpoint
  else:
    from spacer_jax.models.default import describe_default_reference
    reference = describe_default_reference(
        num_tokens, 'tiny' if config.reference.size == 'tiny' else 'cpu')
  budget = config.train.time_budget_s
  train = (f'{max_iters} iterations x {agent_steps_per_iter:,} agent-steps'
           + (f', at most {format_duration(budget)}' if budget else ''))
  lines = [f'{config.variant} run plan:',
           f'  1. reference: {reference}',
           f'  2. data: {config.data.num_eval_scenarios} held-out scenes and a pool of '
           f'{config.data.pool_size} training scenes (generated or read; seconds to a '
           'few minutes)',
           '  3. compile the train step (part of the first iteration; about a minute '
           'on a 2-core CPU)',
           f'  4. train: {train}; a progress line every {config.train.log_every} '
           'iteration(s) with an ETA',
           f'  5. evaluate every {config.train.eval_every or "-"} iteration(s) and at '
           'the end; checkpoints in checkpoints/, final_metrics.json at the end']
  needs_bc = config.variant == 'hr_ppo' or config.train.init_policy == 'bc'
  if needs_bc and not config.hr_ppo.bc_checkpoint:
    role = ' and '.join(r for r, on in (('anchor', config.variant == 'hr_ppo'),
                                        ('initial policy', config.train.init_policy == 'bc'))
                        if on)
    lines.insert(2, f'  1b. behaviour-cloned {role}: {config.bc.steps} steps on the logs of '
                    f'{config.bc.num_pools} training pool(s) first')
  return '\n'.join(lines)


# Fields newer than some runs on disk, with the value those runs implicitly had.
ADDED_FIELDS = {'policy.network': 'late_fusion',
                # Runs before the field evaluated on the whole distribution.
                'train.eval_top_k': 0,
                # Runs before the field started from random weights.
                'train.init_policy': 'random',
                'anchor.kl_warmup_factor': 1.0,
                'anchor.kl_warmup_steps': 0,
                # Runs before the field penalised every off-road agent.
                'reward.exempt_log_offroad': False,
                # Runs before the field let a collided agent still earn its goal.
                'reward.goal_after_infraction': True,
                'train.val_rollouts': 8,
                'train.val_batch_size': 4,
                # Runs before the field cloned pool 0 (goals always shown).
                'bc.num_pools': 1,
                'bc.lr_schedule': 'constant',
                'ppo.critic_warmup_steps': 0,
                'reward.progress_weight': 0.0,
                'reward.progress_min_distance': 10.0,
                # Runs before the field chose the best state by meta alone.
                'train.best_max_min_ade': 0.0,
                **{f'obs.{f.name}': f.default for f in dataclasses.fields(ObservationConfig)
                   if f.name not in ('max_partners', 'partner_radius', 'num_road_points',
                                     'max_prepared_points', 'goal_dropout')}}

# Fields a resumed run may change: its budget and how often it logs, evaluates, saves.
SAFE_TO_CHANGE = ('train.max_iterations', 'train.total_agent_steps', 'train.time_budget_s',
                  'train.log_every', 'train.eval_every', 'train.checkpoint_every',
                  'train.video_every', 'train.eval_top_k', 'train.val_rollouts',
                  'train.val_batch_size', 'train.best_max_min_ade', 'mesh.num_devices')


# --------------------------------------------------------------------------- loop
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       bc_params: Optional[Any] = None) -> dict[str, float]:
  """Trains per ``config`` into ``workdir`` (resuming there); returns the last metrics.

  Every process of a multi-process run calls it with the same arguments.
  """
  is_main = parallel.is_main_process()
  say = print if is_main else (lambda *args, **kwargs: None)
  mesh = parallel.make_mesh(config.mesh.num_devices)
  parallel.check_divisible(mesh, **{'env.num_worlds': config.env.num_worlds,
                                    'data.pool_size': config.data.pool_size})
  runs.check_workdir(workdir)
  vocab, vocab_path = load_vocab(config)
  vocab_path = os.path.abspath(vocab_path)
  # config.json names the vocabulary file itself, so evaluating the run later loads the
  # tokens it was trained with even after the default vocabulary changes.
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.tokens.vocabulary = vocab_path
  # Refused before anything is written: a resumed run must keep its config.
  if is_main:
    runs.accept_config(workdir, config, SAFE_TO_CHANGE, ADDED_FIELDS, upgrade_config)
  steps_per_iter = config.train.steps_per_iteration
  agent_steps_per_iter = (config.env.num_worlds * config.env.policy_steps
                          * config.data.num_objects * steps_per_iter)
  max_iters = config.train.max_iterations or int(
      np.ceil(config.train.total_agent_steps / agent_steps_per_iter))
  done = runs.finished_metrics(
      workdir, Checkpointer(os.path.join(workdir, 'checkpoints')).latest_step(), max_iters)
  if done is not None:
    say(f'{workdir} is finished ({max_iters} of {max_iters} iterations); nothing to do. '
        'Raise --config.train.max_iterations (or total_agent_steps) to train on.')
    return done
  say(run_plan(config, vocab.num_tokens, max_iters, agent_steps_per_iter))
  selfplay = make_selfplay(config, vocab)
  prepare = jax.jit(selfplay.prepare)
  prepare_sharded = jax.jit(selfplay.prepare, out_shardings=parallel.batch_sharding(mesh))

  def sharded_worlds(load: Any, size: int) -> Worlds:
    """Worlds of ``size`` scenarios sharded over the mesh; this process loads only its
    rows (``load(row_ids) -> scenarios``)."""
    return prepare_sharded(parallel.shard_batch(load, size, mesh))

  t0 = time.perf_counter()
  source = ScenarioSource(config)
  num_eval = config.data.num_eval_scenarios
  eval_sharded = num_eval % parallel.num_shards(mesh) == 0
  # Generated (or read) once: the episode evaluation's worlds and the WOSAC validation.
  eval_scenes = source.eval()
  if eval_sharded:
    eval_worlds = sharded_worlds(lambda rows: take_scenes(eval_scenes, np.asarray(rows)),
                                 num_eval)
  else:
    say(f'note: data.num_eval_scenarios={num_eval} is not a multiple of the '
        f'{parallel.num_shards(mesh)} devices: evaluation runs replicated.')
    eval_worlds = parallel.replicate(prepare(eval_scenes), mesh)
  # One local held-out world (on process 0 the first one): shapes and videos.
  example = parallel.first_local_rows(eval_worlds)
  anchor_params = None
  reference = None
  if config.variant == 'spacer':
    reference = load_or_init_reference(config, selfplay, example, vocab_path)
    anchor_params = reference.params
  anchor = make_anchor(config, reference)
  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'))
  fresh = ckpt.latest_step() is None
  warm_start = config.train.init_policy == 'bc' and fresh
  if config.variant == 'hr_ppo' or warm_start:
    if bc_params is None and jax.process_count() > 1 and not config.hr_ppo.bc_checkpoint:
      raise ValueError('a multi-process run with a behaviour-cloned policy (hr_ppo, or '
                       'train.init_policy=bc) needs hr_ppo.bc_checkpoint: train the BC '
                       'policy in a single-process run first (its workdir/bc).')
    if bc_params is None:
      bc_params = _bc_policy(config, workdir, selfplay, source)
  if config.variant == 'hr_ppo':
    anchor_params = bc_params
  anchor_params = parallel.replicate(anchor_params, mesh)

  ppo = train_lib.PPOConfig(num_worlds=config.env.num_worlds, lr=config.ppo.lr,
                            adam_eps=config.ppo.adam_eps, gamma=config.ppo.gamma,
                            gae_lambda=config.ppo.gae_lambda, epochs=config.ppo.epochs,
                            num_minibatches=config.ppo.num_minibatches,
                            max_grad_norm=config.ppo.max_grad_norm,
                            chunk_rows=config.ppo.chunk_rows,
                            critic_warmup_steps=config.ppo.critic_warmup_steps)
  loss = LossConfig(clip_eps=config.loss.clip_eps, value_coef=config.loss.value_coef,
                    entropy_coef=config.loss.entropy_coef, kl_coef=config.anchor.kl_coef,
                    normalize_advantages=config.loss.normalize_advantages,
                    kl_direction='forward' if config.variant == 'hr_ppo' else 'reverse')
  optimizer = train_lib.make_optimizer(ppo)
  # The same key on every process: the train state (and its PRNG key) is global.
  state = train_lib.init_train_state(selfplay, optimizer, example,
                                     jax.random.PRNGKey(config.seed))
  if warm_start:
    # Start from the behaviour-cloned policy: it continues each agent's logged motion
    # (speed -> token) from the first step, which self-play from random weights does
    # not learn within a CPU budget (docs/results.md).
    state = state.replace(params=bc_params, opt_state=optimizer.init(bc_params))
  state = parallel.replicate(state, mesh)
  num_params = count_params(state.params)
  step_fn = train_lib.make_train_step(selfplay, anchor, loss, ppo, optimizer, mesh)
  replicated = parallel.replicated(mesh)
  iteration_fn = jax.jit(
      train_lib.make_train_iteration(step_fn, config.train.steps_per_iteration),
      in_shardings=(replicated, parallel.batch_sharding(mesh), replicated, replicated),
      out_shardings=(replicated, replicated), donate_argnums=0)
  weights = parallel.replicate(anchor_weights(config), mesh)
  evaluate = jax.jit(train_lib.make_evaluate(selfplay, mesh if eval_sharded else None,
                                             Decoding(top_k=config.train.eval_top_k)),
                     out_shardings=replicated)
  eval_key = parallel.replicate(jax.random.PRNGKey(config.seed + 1), mesh)
  validate = make_validation(config, selfplay, eval_scenes)
  best = BestCheckpoint(workdir, config.train.best_max_min_ade)

  restored = ckpt.restore(state)
  iteration, agent_steps = 0, 0.0
  if restored is not None:
    _, state, meta = restored
    saved_vocab = meta.get('vocabulary')
    if saved_vocab and os.path.abspath(saved_vocab) != os.path.abspath(vocab_path):
      raise ValueError(f'{ckpt.directory} was trained with the vocabulary {saved_vocab}, '
                       f'this run uses {vocab_path}; resume with '
                       f'--config.tokens.vocabulary={saved_vocab} or use a new workdir.')
    iteration, agent_steps = int(meta['iteration']), float(meta['agent_steps'])
    say(f'resumed from {ckpt.directory} at iteration {iteration} '
        f'({agent_steps:.3g} agent-steps).')
  logger = MetricLogger(workdir, print_keys=PRINT_KEYS, total_steps=max_iters,
                        time_budget_s=config.train.time_budget_s)
  say(f'{config.variant}: policy {num_params} params, {vocab.num_tokens} tokens, '
      f'{config.env.num_worlds} worlds x {config.data.num_objects} slots x '
      f'{config.env.policy_steps} steps on {parallel.num_shards(mesh)} device(s), '
      f'{jax.process_count()} process(es); setup {time.perf_counter() - t0:.1f}s.')

  refresh = config.data.refresh_every
  pool, pool_id = None, None
  last: dict[str, float] = {}
  if iteration == 0 and config.train.eval_every:
    # The starting policy (random or behaviour-cloned) is the first point of the
    # validation curve, and the best state until training beats it.
    val = validate(parallel.to_host(state.params))
    logger.write(0, val, prefix='val/', echo=False)
    best.offer(0, state, val)
    say(f'  WOSAC val of the starting policy: meta {val["meta"]:.4f} | collision '
        f'{val["collision"]:.3f} | off-road excl. log {val["offroad_excl_log"]:.3f} | '
        f'minADE {val["min_ade"]:.2f}')
  run_start = time.perf_counter()
  final = False
  while iteration < max_iters and not final:
    if pool_id != iteration // refresh:
      pool_id = iteration // refresh
      ids = source.pool_indices(pool_id)
      pool = sharded_worlds(lambda rows, ids=ids: source.scenarios([ids[r] for r in rows]),
                            len(ids))
    start = time.perf_counter()
    state, metrics = iteration_fn(state, pool, anchor_params, weights)
    metrics = parallel.to_host(metrics)
    seconds = time.perf_counter() - start
    iteration += 1
    agent_steps += float(metrics['agent_steps'])
    metrics['agent_steps_per_s'] = metrics['agent_steps'] / seconds
    metrics['total_agent_steps'] = agent_steps
    final = iteration == max_iters or _out_of_time(config.train.time_budget_s, run_start)
    if iteration % config.train.log_every == 0 or final:
      last = logger.write(iteration, metrics)
    every = config.train.eval_every
    if every and (iteration % every == 0 or final):
      ev = parallel.to_host(evaluate(state.params, eval_worlds, eval_key))
      last.update(logger.write(iteration, ev, prefix='eval/', echo=False))
      val = validate(parallel.to_host(state.params))
      last.update(logger.write(iteration, val, prefix='val/', echo=False))
      improved = best.offer(iteration, state, val)
      say(f'  eval: goal {ev["goal_rate"]:.3f} | collision {ev["collision_rate"]:.3f} '
          f'| off-road {ev["offroad_rate"]:.3f} || WOSAC val: meta {val["meta"]:.4f} '
          f'| collision {val["collision"]:.3f} | off-road excl. log '
          f'{val["offroad_excl_log"]:.3f} | minADE {val["min_ade"]:.2f}'
          + (' (best so far)' if improved else f' (best: iteration {best.iteration}'
             + (f'; frozen: minADE above {best.max_min_ade:g} m' if best.frozen(val)
                else '') + ')'))
    if iteration % config.train.checkpoint_every == 0 or final:
      ckpt.save(iteration, state, {'iteration': iteration, 'agent_steps': agent_steps,
                                   'variant': config.variant, 'num_params': num_params,
                                   'vocabulary': vocab_path})
    if is_main and config.train.video_every and iteration % config.train.video_every == 0:
      _render_episode(selfplay, parallel.to_host(state.params), example, workdir, iteration)
  logger.close()
  ckpt.close()
  best.close()
  if best.iteration is not None:
    last.update({'best/iteration': float(best.iteration),
                 **{f'best/{k}': v for k, v in best.metrics.items()}})
    say(f'best validation meta {best.metrics["meta"]:.4f} at iteration {best.iteration} '
        f'(load it as {config.variant}:{best.directory}).')
  if is_main:
    from spacer_jax.viz import curves
    curves.plot_training_curves({config.variant: workdir},
                                os.path.join(workdir, 'curves.png'))
    runs.write_final_metrics(workdir, {k: float(v) for k, v in last.items()})
  return last


def make_validation(config: ml_collections.ConfigDict, selfplay: SelfPlay,
                    scenes: SimulatorState) -> Callable[[Any], dict[str, float]]:
  """``validate(params) -> metrics``: WOSAC realism of the policy on the held-out
  ``scenes``, the scoring of ``experiments.evaluate`` (``eval.policy_realism``).

  The policy acts as evaluation runs it (``LearnedPolicy``: every object valid at the
  current step simulated for ``env.policy_steps`` decisions, tokens decoded with
  ``train.eval_top_k``), ``train.val_rollouts`` rollouts per scene with fixed keys, so
  successive validations differ only by the parameters. Metrics: the 2025 meta
  metric, minADE, collision rate, off-road rate excluding log-off-road agents, the
  linear-speed likelihood and the three buckets (``policy_realism.VALIDATION_FIELDS``).
  """
  from spacer_jax.eval.policy_realism import score_policy, validation_metrics
  from spacer_jax.eval.sim_agent_policies import LearnedPolicy, default_env
  policy = LearnedPolicy(selfplay, Decoding(top_k=config.train.eval_top_k),
                         variant=config.variant)
  env = default_env()
  rng = jax.random.PRNGKey(config.seed + 2)

  def validate(params: Any) -> dict[str, float]:
    scored = score_policy(policy, params, scenes, rng, env=env,
                          vocab=selfplay.token_env.vocab,
                          num_rollouts=config.train.val_rollouts,
                          num_steps=config.env.policy_steps,
                          batch_size=config.train.val_batch_size)
    return validation_metrics(scored['2025'])

  return validate


class BestCheckpoint:
  """The train state with the best validation meta metric so far, among states that
  are not frozen (validation minADE at most ``max_min_ade`` m; 0 = no guard).

  ``workdir/best/`` is a loadable run of its own (``spacer:WORKDIR/best``): the run's
  ``config.json``, one orbax checkpoint in ``checkpoints/`` and ``best.json`` naming
  its iteration and validation metrics. A resumed run continues from what is there.
  """

  def __init__(self, workdir: str, max_min_ade: float = 0.0):
    self.workdir = workdir
    self.max_min_ade = float(max_min_ade)
    self.directory = os.path.join(workdir, 'best')
    self._json = os.path.join(self.directory, 'best.json')
    self._ckpt: Optional[Checkpointer] = None
    self.iteration: Optional[int] = None
    self.metrics: dict[str, float] = {}
    if os.path.exists(self._json):
      with open(self._json) as f:
        saved = json.load(f)
      self.iteration, self.metrics = int(saved['iteration']), saved['metrics']

  def frozen(self, metrics: dict[str, float]) -> bool:
    """Whether validation ``metrics`` show a policy too far from the log to be kept:
    agents that stopped (or never drove) end up tens of metres behind it."""
    return bool(self.max_min_ade) and not metrics['min_ade'] <= self.max_min_ade

  def offer(self, iteration: int, state: Any, metrics: dict[str, float]) -> bool:
    """Keeps ``state`` when its validation ``metrics['meta']`` beats the best so far
    and it is not :meth:`frozen` (NaN never counts); returns whether it did."""
    meta = metrics['meta']
    if not np.isfinite(meta) or self.frozen(metrics) or (
        self.iteration is not None and not meta > self.metrics['meta']):
      return False
    if self._ckpt is None:
      self._ckpt = Checkpointer(os.path.join(self.directory, 'checkpoints'), max_to_keep=1)
    self._ckpt.save(iteration, state, {'iteration': iteration, 'validation': metrics})
    self.iteration, self.metrics = iteration, dict(metrics)
    if parallel.is_main_process():
      shutil.copyfile(os.path.join(self.workdir, 'config.json'),
                      os.path.join(self.directory, 'config.json'))
      runs.write_json_atomic(self._json, {'iteration': iteration, 'metrics': self.metrics})
    return True

  def close(self) -> None:
    if self._ckpt is not None:
      self._ckpt.close()


def _out_of_time(budget_s: float, start: float) -> bool:
  """Whether this run's time budget is spent; process 0's clock decides for every host."""
  if not budget_s:
    return False
  spent = time.perf_counter() - start > budget_s
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    spent = bool(multihost_utils.broadcast_one_to_all(np.asarray(spent)))
  return spent


def _bc_policy(config: ml_collections.ConfigDict, workdir: str, selfplay: SelfPlay,
               source: ScenarioSource) -> Any:
  """HR-PPO's behaviour-cloned anchor: loaded from ``hr_ppo.bc_checkpoint`` or trained."""
  from spacer_jax.spacer import bc
  if config.hr_ppo.bc_checkpoint:
    return bc.load_bc_policy(config.hr_ppo.bc_checkpoint)
  return bc.train_bc_policy(config, os.path.join(workdir, 'bc'), selfplay,
                            source.scenarios, source.pool_indices)


def _render_episode(selfplay: SelfPlay, params: Any, worlds: Worlds, workdir: str,
                    iteration: int) -> Optional[str]:
  from spacer_jax.viz import render
  one = jax.tree_util.tree_map(lambda x: x[:1], worlds)
  episode = jax.jit(selfplay.rollout)(
      params, one, jax.random.PRNGKey(iteration))
  final = jax.tree_util.tree_map(lambda x: x[0], episode.final_state)
  final = final.replace(road_edge_index=None)
  path = os.path.join(workdir, 'videos', f'rollout_{iteration:06d}.mp4')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  return render.save_video(final, path, start=selfplay.start_step,
                           end=int(final.timestep) + 1)


__all__ = ['ScenarioSource', 'eval_seeds', 'pool_seeds',
           'train_and_evaluate']
