"""Host loop of reference-model training (teacher forcing, or CAT-K fine-tuning).

``train_and_evaluate(config, workdir)`` builds the data, model and optimiser from the
config, resumes from ``WORKDIR/checkpoints``, runs compiled train steps, logs every
``log_every`` steps (with tokens/s), evaluates every ``eval_every`` steps (token NLL,
top-1 / top-5 accuracy, closed-loop minADE / collision / off-road) and exports the
model with ``save_reference(WORKDIR/export, ...)`` at every eval and at the end.

Data: a fixed train set (generator seeds ``0 .. N-1``, or the first N records of
``data.files``) tokenised once and kept in memory; held-out scenes come from seeds
``eval_seed_offset + i`` (or ``data.eval_files`` / the records after the train ones).
The minibatch of step ``i`` is a function of ``i`` and the seed only (an epoch-wise
permutation), and dropout keys are folded from the step, so a run killed after a
checkpoint resumes exactly as if it had not stopped.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from spacer_jax.data import generator
from spacer_jax.models import count_params, reference_config
from spacer_jax.models import train as train_lib
from spacer_jax.models.checkpoint import load_reference, save_reference
from spacer_jax.models.config import ReferenceConfig
from spacer_jax.sim.builders import stack_states
from spacer_jax.sim.config import EnvConfig
from spacer_jax.sim.datatypes import SimulatorState
from spacer_jax.sim.dynamics import get_dynamics_model
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.tokens import TokenEnvironment, TokenVocabulary, load_vocabulary
from spacer_jax.training import Checkpointer, MetricLogger, format_duration, runs

PRINT_KEYS = ['loss', 'nll', 'accuracy_top1', 'accuracy_top5', 'tokens_per_s', 'lr']


# --------------------------------------------------------------------------- pieces
def model_config(config: ml_collections.ConfigDict, num_tokens: int) -> ReferenceConfig:
  """The ``ReferenceConfig`` of ``config.model`` (``tiny`` = a seconds-sized model)."""
  size = config.model.size
  common = dict(num_tokens=num_tokens, num_map_segments=config.model.num_map_segments,
                dropout=config.model.dropout,
                agent_motion_features=config.model.agent_motion_features,
                history_dropout=config.model.history_dropout)
  if size == 'tiny':
    return reference_config('nano', hidden=32, map_layers=1, agent_layers=1, k_map_self=4,
                            k_map=8, k_agent=4, temporal_window=4, rel_dim=16, **common)
  return reference_config(size, **common)


def load_vocab(config: ml_collections.ConfigDict) -> tuple[TokenVocabulary, str]:
  """The vocabulary named by ``config.tokens`` (default: the cached default one)."""
  from spacer_jax.models.default_vocabulary import (
      default_vocabulary_path,
      get_or_build_default_vocabulary,
  )
  if config.tokens.vocabulary:
    return load_vocabulary(config.tokens.vocabulary), config.tokens.vocabulary
  k, s = config.tokens.num_tokens, config.tokens.steps_per_token
  return get_or_build_default_vocabulary(k, s), default_vocabulary_path(k, s)


def make_token_env(vocab: TokenVocabulary) -> TokenEnvironment:
  """Every valid object controlled; overlap and off-road measured after each step."""
  env = MultiAgentEnvironment(get_dynamics_model('delta_global'),
                              EnvConfig(metrics=('overlap', 'offroad'), rewards={}))
  return TokenEnvironment(env, vocab)


def _generator_config(config: ml_collections.ConfigDict) -> generator.GeneratorConfig:
  return generator.GeneratorConfig(num_objects=config.data.num_objects,
                                   num_roadgraph_points=config.data.num_roadgraph_points,
                                   incident_rate=config.data.incident_rate)


def _read_records(files: str, config: ml_collections.ConfigDict, skip: int,
                  count: int) -> list[SimulatorState]:
  from spacer_jax.data import womd
  states = womd.read_scenarios(files, skip, count, config.data.format,
                               config.data.num_objects, config.data.num_roadgraph_points)
  if not states:
    raise ValueError(f'data.files {files!r} holds no records after the first {skip}.')
  return states


def load_scenarios(config: ml_collections.ConfigDict, split: str) -> list[SimulatorState]:
  """The train (``'train'``) or held-out (``'eval'``) scenes as unbatched states."""
  n_train, n_eval = config.data.num_train_scenarios, config.data.num_eval_scenarios
  if config.data.files:
    if split == 'train':
      return _read_records(config.data.files, config, 0, n_train)
    if config.data.eval_files:
      return _read_records(config.data.eval_files, config, 0, n_eval)
    return _read_records(config.data.files, config, n_train, n_eval)
  seeds = (range(n_train) if split == 'train'
           else range(config.data.eval_seed_offset, config.data.eval_seed_offset + n_eval))
  gen = _generator_config(config)
  return [generator.generate_scenario(int(s), gen) for s in seeds]


def tokenise_all(states: list[SimulatorState], vocab: TokenVocabulary,
                 rcfg: ReferenceConfig, chunk: int, jit_options: Optional[dict]) -> Any:
  """``ReferenceInputs`` of every state, stacked ``(len(states),)``; compiled per chunk."""
  make = jax.jit(train_lib.make_inputs, static_argnums=2, compiler_options=jit_options)
  parts = []
  for i in range(0, len(states), chunk):
    group = states[i:i + chunk]
    pad = chunk - len(group)  # Pad the last chunk so every call has one shape.
    batch = stack_states(group + [group[-1]] * pad)
    parts.append(jax.tree.map(lambda a, n=len(group): a[:n], make(vocab, batch, rcfg)))
  return jax.tree.map(lambda *xs: jnp.concatenate(xs, 0), *parts)


def batch_indices(step: int, num_examples: int, batch_size: int, seed: int) -> np.ndarray:
  """Minibatch of ``step``: consecutive slices of a per-epoch permutation (host-side)."""
  start = step * batch_size
  out = []
  while len(out) < batch_size:
    epoch, offset = divmod(start + len(out), num_examples)
    perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
    out.extend(perm[offset:offset + batch_size - len(out)].tolist())
  return np.asarray(out, np.int32)


def _take(tree: Any, index: np.ndarray) -> Any:
  return jax.tree.map(lambda a: a[index], tree)


# --------------------------------------------------------------------------- evals
def evaluate(config: ml_collections.ConfigDict, fns: dict, params: Any, eval_inputs: Any,
             eval_states: Optional[SimulatorState]) -> dict[str, float]:
  """Teacher-forced token NLL / top-1 / top-5 and closed-loop figures (host loop)."""
  totals: dict[str, float] = {}
  n = eval_inputs.token_ids.shape[0]
  b = config.eval.batch_size
  for i in range(0, n - b + 1, b):
    out = jax.device_get(fns['eval'](params, _take(eval_inputs, np.arange(i, i + b))))
    for k, v in out.items():
      totals[k] = totals.get(k, 0.0) + float(v)
  count = max(totals.get('num_targets', 0.0), 1.0)
  result = {'nll': totals.get('nll_sum', 0.0) / count,
            'accuracy_top1': totals.get('top1_sum', 0.0) / count,
            'accuracy_top5': totals.get('top5_sum', 0.0) / count}
  if eval_states is not None:
    start = time.perf_counter()
    cl = jax.device_get(fns['closed_loop'](params, eval_states,
                                           jax.random.key(config.seed + 1)))
    result.update(
        min_ade=float(cl['min_ade_sum']) / max(float(cl['ade_agents']), 1.0),
        collision_rate=float(cl['collided_sum']) / max(float(cl['agent_samples']), 1.0),
        offroad_rate=float(cl['offroad_sum']) / max(float(cl['agent_samples']), 1.0),
        rollout_seconds=time.perf_counter() - start)
  return result


# Fields a resumed run may change: its time budget and how often it logs and saves.
SAFE_TO_CHANGE = ('train.time_budget_s', 'train.stop_at', 'train.log_every',
                  'train.eval_every', 'train.checkpoint_every')
# Fields added after older runs were written, with the value those runs had.
ADDED_FIELDS = {'model.agent_motion_features': False, 'data.incident_rate': 0.0,
                'model.history_dropout': 0.0}


def _finished(config: ml_collections.ConfigDict, workdir: str) -> Optional[dict]:
  """The final figures of a run that already ended (all steps, or its time budget)."""
  latest = Checkpointer(os.path.join(workdir, 'checkpoints')).latest_step()
  final = runs.finished_metrics(workdir, latest, 0)
  if final is None or latest is None or int(final.get('step', -1)) != latest:
    return None
  budget = config.train.time_budget_s
  out_of_time = bool(budget) and float(final.get('train_seconds', 0.0)) >= budget
  return final if latest >= config.train.num_steps or out_of_time else None


# --------------------------------------------------------------------------- loop
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains per ``config`` into ``workdir`` (resuming there); returns the last eval."""
  t_setup = time.perf_counter()
  # Before anything is written.
  runs.accept_config(workdir, config, SAFE_TO_CHANGE, ADDED_FIELDS)
  done = _finished(config, workdir)
  if done is not None:
    print(f'{workdir} is finished (step {done.get("step")}); nothing to do. Raise '
          '--config.train.time_budget_s to train on.', flush=True)
    return done
  jit_options = {'xla_backend_optimization_level': 0} if config.train.fast_compile else None
  vocab, vocab_path = load_vocab(config)
  init_params = None
  if config.init_checkpoint:
    loaded = load_reference(config.init_checkpoint)
    rcfg, init_params = loaded.config, loaded.params
    if rcfg.num_tokens != vocab.num_tokens:
      raise ValueError(f'init_checkpoint {config.init_checkpoint} predicts '
                       f'{rcfg.num_tokens} tokens, the vocabulary has {vocab.num_tokens}.')
    if config.model.agent_motion_features and not rcfg.agent_motion_features:
      rcfg, init_params = train_lib.add_motion_features(rcfg, init_params)
      print('init_checkpoint: the agent->agent keys gain relative motion inputs '
            '(zero weights: the loaded model is unchanged until they train).', flush=True)
    # A training setting: the recipe's, whatever the loaded model was trained with.
    rcfg = dataclasses.replace(rcfg, history_dropout=config.model.history_dropout)
  else:
    rcfg = model_config(config, vocab.num_tokens)
  if config.catk.enabled and init_params is None:
    raise ValueError('catk fine-tuning needs --config.init_checkpoint (a reference '
                     'artifact or train_reference workdir).')
  token_env = make_token_env(vocab)

  budget_note = (f', at most {format_duration(config.train.time_budget_s)}'
                 if config.train.time_budget_s else '')
  print(f'plan: prepare and tokenise the scenes (about 90 s per 1000 generated scenes on '
        f'a 2-core CPU), compile, train {config.train.num_steps} steps{budget_note} '
        f'(a progress line every {config.train.log_every} steps with an ETA), then a '
        f'closed-loop evaluation on {config.eval.rollout_scenarios} held-out scenes.',
        flush=True)
  print(f'preparing {config.data.num_train_scenarios} train / '
        f'{config.data.num_eval_scenarios} eval scenes ...', flush=True)
  train_states = load_scenarios(config, 'train')
  eval_list = load_scenarios(config, 'eval')
  chunk = config.data.chunk
  train_inputs = tokenise_all(train_states, vocab, rcfg, chunk, jit_options)
  eval_inputs = tokenise_all(eval_list, vocab, rcfg, chunk, jit_options)
  n_roll = min(config.eval.rollout_scenarios, len(eval_list))
  eval_states = stack_states(eval_list[:n_roll]) if n_roll else None
  noised = config.train.noise_prob > 0 and not config.catk.enabled
  train_batch = stack_states(train_states) if config.catk.enabled else None
  train_logs = (train_lib.log_batch(stack_states(train_states)) if noised else None)
  del train_states
  num_train = train_inputs.token_ids.shape[0]

  optimizer = train_lib.make_optimizer(
      config.train.lr, config.train.num_steps, config.train.warmup_steps,
      config.train.weight_decay, config.train.grad_clip)
  example = _take(train_inputs, np.arange(1))
  state = train_lib.init_train_state(rcfg, optimizer, example,
                                     jax.random.key(config.seed), params=init_params)
  num_params = count_params(state.params)
  jit = lambda fn, **kw: jax.jit(fn, compiler_options=jit_options, **kw)
  if config.catk.enabled:
    step_fn = jit(train_lib.make_catk_train_step(
        rcfg, optimizer, vocab, token_env, top_k=config.catk.top_k,
        label_smoothing=config.train.label_smoothing), donate_argnums=0)
  else:
    step_fn = jit(train_lib.make_train_step(
        rcfg, optimizer, config.train.label_smoothing, vocab=vocab,
        noise_top_k=config.train.noise_top_k, noise_prob=config.train.noise_prob),
        donate_argnums=0)
  fns = {
      'eval': jit(lambda p, x: train_lib.eval_step(rcfg, p, x)),
      'closed_loop': jit(lambda p, s, k: train_lib.closed_loop_metrics(
          rcfg, p, vocab, token_env, s, k, num_samples=config.eval.num_samples,
          num_steps=config.eval.num_steps, top_k=config.eval.top_k,
          temperature=config.eval.temperature)),
  }

  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'))
  restored = ckpt.restore(state)
  step = 0
  if restored is not None:
    step, state, meta = restored
    print(f'resumed from {ckpt.directory} at step {step} '
          f'(data cursor {meta.get("data_cursor")}).', flush=True)
  total = config.train.num_steps
  stop = min(total, config.train.stop_at or total)
  logger = MetricLogger(workdir, print_keys=PRINT_KEYS, total_steps=total,
                        time_budget_s=config.train.time_budget_s)
  tokens_per_step = config.train.batch_size * int(np.prod(train_inputs.token_ids.shape[1:]))
  noise_note = (f' on noised tokens (top-{config.train.noise_top_k}, p '
                f'{config.train.noise_prob})' if noised else '')
  print(f'reference {rcfg.hidden}x{rcfg.agent_layers} ({num_params} params, '
        f'{vocab.num_tokens} tokens), {num_train} train scenes x '
        f'{train_inputs.num_agents} agents, batch {config.train.batch_size}, '
        f'{"CAT-K" if config.catk.enabled else "teacher forcing"}'
        f'{noise_note}; setup '
        f'{time.perf_counter() - t_setup:.1f}s.', flush=True)

  schedule_lr = lambda s: float(_lr_at(config, s))
  last_eval: dict[str, float] = {}
  t_start, window_start, window_steps = time.perf_counter(), time.perf_counter(), 0
  budget = config.train.time_budget_s
  metrics = None

  def save(step: int) -> None:
    ckpt.save(step, state, {'step': step, 'data_cursor': step * config.train.batch_size,
                            'num_params': num_params, 'vocabulary': vocab_path})

  def run_eval(step: int) -> dict[str, float]:
    ev = evaluate(config, fns, state.params, eval_inputs, eval_states)
    logger.write(step, ev, prefix='eval/', echo=False)
    print('  eval: ' + ' | '.join(f'{k} {v:.4g}' for k, v in ev.items()), flush=True)
    save_reference(os.path.join(workdir, 'export'), rcfg, state.params, vocab_path,
                   {'step': step, 'eval': ev, 'num_params': num_params,
                    'train_seconds': time.perf_counter() - t_start,
                    'catk': bool(config.catk.enabled), 'data': config.data.to_dict()})
    return ev

  while step < stop:
    index = batch_indices(step, num_train, config.train.batch_size, config.seed)
    batch = _take(train_batch if config.catk.enabled else train_inputs, index)
    if noised:
      state, metrics = step_fn(state, batch, _take(train_logs, index))
    else:
      state, metrics = step_fn(state, batch)
    step += 1
    window_steps += 1
    if step % config.train.log_every == 0 or step == stop:
      metrics = jax.device_get(metrics)
      seconds = time.perf_counter() - window_start
      metrics['tokens_per_s'] = tokens_per_step * window_steps / seconds
      metrics['lr'] = schedule_lr(step - 1)
      logger.write(step, metrics)
      window_start, window_steps = time.perf_counter(), 0
    out_of_time = budget and time.perf_counter() - t_start > budget
    if step % config.train.checkpoint_every == 0 or step == stop or out_of_time:
      save(step)
    if step % config.train.eval_every == 0 and step < stop and not out_of_time:
      last_eval = run_eval(step)
    if out_of_time:
      print(f'time budget of {budget:.0f}s reached at step {step}.', flush=True)
      break
  if stop == total or (budget and time.perf_counter() - t_start > budget):
    last_eval = run_eval(step)
    last_eval['train_seconds'] = time.perf_counter() - t_start
    last_eval['step'] = step
    runs.write_final_metrics(workdir, last_eval)
  logger.close()
  ckpt.close()
  return last_eval


def _lr_at(config: ml_collections.ConfigDict, step: int) -> float:
  import optax
  total = config.train.num_steps
  warmup = min(int(config.train.warmup_steps), total - 1)
  schedule = optax.warmup_cosine_decay_schedule(
      0.0 if warmup else config.train.lr, config.train.lr, warmup, max(total, warmup + 1),
      0.0)
  return schedule(step)


__all__ = ['batch_indices', 'evaluate', 'load_scenarios', 'load_vocab', 'make_token_env',
           'model_config', 'tokenise_all', 'train_and_evaluate']
