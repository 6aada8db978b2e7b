"""Host loop of SPACER / PPO / HR-PPO training: data, anchor, compiled iterations, logs.

``train_and_evaluate(config, workdir)`` builds everything from the config, resumes from
the newest checkpoint in ``workdir`` and runs compiled iterations of
``config.train.steps_per_iteration`` train steps; between iterations it logs, evaluates
on held-out scenarios, checkpoints and renders videos.

Determinism and resume: the scenario pool of iteration ``i`` is a function of
``i // refresh_every`` only, and the PRNG key lives in the train state, so a run killed
after a checkpoint and resumed continues exactly as if it had not stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from spacer_jax.data import generator
from spacer_jax.models import ReferenceConfig, build_reference_inputs, init_reference
from spacer_jax.models.checkpoint import load_reference
from spacer_jax.sim.builders import stack_states
from spacer_jax.sim.config import EnvConfig
from spacer_jax.sim.dynamics import get_dynamics_model
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.spacer import train as train_lib
from spacer_jax.spacer.losses import LossConfig
from spacer_jax.spacer.observation import ObservationConfig
from spacer_jax.spacer.policy import LateFusionPolicy, count_params
from spacer_jax.spacer.rewards import RewardConfig
from spacer_jax.spacer.selfplay import SelfPlay, Worlds
from spacer_jax.tokens import (
    TokenEnvironment,
    TokenVocabulary,
    get_or_build_default_vocabulary,
    load_vocabulary,
)
from spacer_jax.training import Checkpointer, MetricLogger

PRINT_KEYS = ['agent_steps_per_s', 'goal_rate', 'collision_rate', 'offroad_rate', 'kl_ref',
              'entropy', 'return']


# --------------------------------------------------------------------------- pieces
def load_vocab(config: ml_collections.ConfigDict) -> tuple[TokenVocabulary, str]:
  """The token vocabulary named by ``config.tokens`` (default: the cached one)."""
  from spacer_jax.tokens.vocabulary import default_vocabulary_path
  if config.tokens.vocabulary:
    return load_vocabulary(config.tokens.vocabulary), config.tokens.vocabulary
  vocab = get_or_build_default_vocabulary(config.tokens.num_tokens,
                                          config.tokens.steps_per_token)
  return vocab, default_vocabulary_path(config.tokens.num_tokens,
                                        config.tokens.steps_per_token)


def make_selfplay(config: ml_collections.ConfigDict, vocab: TokenVocabulary) -> SelfPlay:
  env = MultiAgentEnvironment(get_dynamics_model('delta_global'),
                              EnvConfig(metrics=('overlap', 'offroad'), rewards={}))
  policy = LateFusionPolicy(num_tokens=vocab.num_tokens, width=config.policy.width,
                            hidden=config.policy.hidden, head_width=config.policy.head_width)
  obs = ObservationConfig(max_partners=config.obs.max_partners,
                          partner_radius=config.obs.partner_radius,
                          num_road_points=config.obs.num_road_points,
                          max_prepared_points=config.obs.max_prepared_points,
                          goal_dropout=config.obs.goal_dropout)
  reward = RewardConfig(**config.reward.to_dict())
  return SelfPlay(TokenEnvironment(env, vocab), policy, obs, reward, config.env.policy_steps)


def generator_config(config: ml_collections.ConfigDict) -> generator.GeneratorConfig:
  return generator.GeneratorConfig(num_objects=config.data.num_objects,
                                   num_roadgraph_points=config.data.num_roadgraph_points)


def pool_seeds(config: ml_collections.ConfigDict, refresh: int) -> list[int]:
  """Generator seeds of the pool used after ``refresh`` refreshes (cycles the train set)."""
  size, total = config.data.pool_size, config.data.num_train_scenarios
  return [config.seed * 1_000_003 + (refresh * size + i) % total for i in range(size)]


def eval_seeds(config: ml_collections.ConfigDict) -> list[int]:
  return [config.data.eval_seed_offset + i for i in range(config.data.num_eval_scenarios)]


def load_scenarios(config: ml_collections.ConfigDict, seeds: list[int]):
  """Scenarios for ``seeds``: generated, or records ``seeds`` of ``config.data.files``."""
  if not config.data.files:
    return stack_states([generator.generate_scenario(s, generator_config(config))
                         for s in seeds])
  from spacer_jax.data import womd
  files = womd.list_files(config.data.files)
  wanted = sorted(set(seeds))
  records, states = {}, []
  index = 0
  for path in files:
    for _, raw in womd.read_records(path):
      if index in wanted:
        records[index] = womd.decode_record(raw, config.data.format,
                                            config.data.num_objects,
                                            config.data.num_roadgraph_points)
      index += 1
  if not records:
    raise ValueError(f'no records found in {config.data.files!r}.')
  for s in seeds:
    states.append(records.get(s, records[min(records)]))
  return stack_states(states)


def make_anchor(config: ml_collections.ConfigDict, reference: Any
                ) -> train_lib.Anchor:
  if config.variant == 'spacer':
    return train_lib.Anchor('reference', reference.config,
                            config.reward.likelihood_weight)
  if config.variant == 'hr_ppo':
    return train_lib.Anchor('policy')
  return train_lib.Anchor('none')


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
  if not path:
    from spacer_jax.models.default import get_or_train_default_reference
    path = get_or_train_default_reference(num_tokens=selfplay.policy.num_tokens)
  reference = load_reference(path)
  if reference.config.num_tokens != selfplay.policy.num_tokens:
    raise ValueError(f'reference {path} predicts {reference.config.num_tokens} tokens but '
                     f'the vocabulary has {selfplay.policy.num_tokens}.')
  if os.path.abspath(reference.vocabulary_path) != os.path.abspath(vocab_path):
    print(f'note: reference {path} was trained on vocabulary {reference.vocabulary_path}; '
          f'training uses {vocab_path}.')
  return reference


# --------------------------------------------------------------------------- loop
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       bc_params: Optional[Any] = None) -> dict[str, float]:
  """Trains per ``config`` into ``workdir`` (resuming there); returns the last metrics."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  vocab, vocab_path = load_vocab(config)
  selfplay = make_selfplay(config, vocab)
  prepare = jax.jit(selfplay.prepare)

  def pool_for(refresh: int) -> Worlds:
    return prepare(load_scenarios(config, pool_seeds(config, refresh)))

  t0 = time.perf_counter()
  eval_worlds = prepare(load_scenarios(config, eval_seeds(config)))
  anchor_params = None
  reference = None
  if config.variant == 'spacer':
    reference = load_or_init_reference(config, selfplay, eval_worlds, vocab_path)
    anchor_params = reference.params
  anchor = make_anchor(config, reference)
  if config.variant == 'hr_ppo':
    anchor_params = bc_params if bc_params is not None else _bc_policy(config, workdir,
                                                                       selfplay)

  ppo = train_lib.PPOConfig(num_worlds=config.env.num_worlds, lr=config.ppo.lr,
                            adam_eps=config.ppo.adam_eps, gamma=config.ppo.gamma,
                            gae_lambda=config.ppo.gae_lambda, epochs=config.ppo.epochs,
                            num_minibatches=config.ppo.num_minibatches,
                            max_grad_norm=config.ppo.max_grad_norm)
  kl_coef = config.hr_ppo.kl_coef if config.variant == 'hr_ppo' else config.loss.kl_coef
  loss = LossConfig(clip_eps=config.loss.clip_eps, value_coef=config.loss.value_coef,
                    entropy_coef=config.loss.entropy_coef, kl_coef=kl_coef,
                    normalize_advantages=config.loss.normalize_advantages,
                    kl_direction='forward' if config.variant == 'hr_ppo' else 'reverse')
  optimizer = train_lib.make_optimizer(ppo)
  state = train_lib.init_train_state(selfplay, optimizer, eval_worlds,
                                     jax.random.PRNGKey(config.seed))
  num_params = count_params(state.params)
  step_fn = train_lib.make_train_step(selfplay, anchor, loss, ppo, optimizer)
  iteration_fn = jax.jit(train_lib.make_train_iteration(step_fn,
                                                        config.train.steps_per_iteration),
                         donate_argnums=0)
  evaluate = jax.jit(train_lib.make_evaluate(selfplay))

  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'))
  restored = ckpt.restore(state)
  iteration, agent_steps = 0, 0.0
  if restored is not None:
    _, state, meta = restored
    iteration, agent_steps = int(meta['iteration']), float(meta['agent_steps'])
    print(f'resumed from {ckpt.directory} at iteration {iteration} '
          f'({agent_steps:.3g} agent-steps).')
  steps_per_iter = config.train.steps_per_iteration
  agent_steps_per_iter = (config.env.num_worlds * config.env.policy_steps
                          * config.data.num_objects * steps_per_iter)
  max_iters = config.train.max_iterations or int(
      np.ceil(config.train.total_agent_steps / agent_steps_per_iter))
  logger = MetricLogger(workdir, print_keys=PRINT_KEYS, total_steps=max_iters)
  print(f'{config.variant}: policy {num_params} params, {vocab.num_tokens} tokens, '
        f'{config.env.num_worlds} worlds x {config.data.num_objects} slots x '
        f'{config.env.policy_steps} steps; setup {time.perf_counter() - t0:.1f}s.')

  refresh = config.data.refresh_every
  pool, pool_id = None, None
  last: dict[str, float] = {}
  while iteration < max_iters:
    if pool_id != iteration // refresh:
      pool_id = iteration // refresh
      pool = pool_for(pool_id)
    start = time.perf_counter()
    state, metrics = iteration_fn(state, pool, anchor_params)
    metrics = jax.device_get(metrics)
    seconds = time.perf_counter() - start
    iteration += 1
    agent_steps += float(metrics['agent_steps'])
    metrics['agent_steps_per_s'] = metrics['agent_steps'] / seconds
    metrics['total_agent_steps'] = agent_steps
    if iteration % config.train.log_every == 0 or iteration == max_iters:
      last = logger.write(iteration, metrics)
    every = config.train.eval_every
    if every and (iteration % every == 0 or iteration == max_iters):
      ev = evaluate(state.params, eval_worlds, jax.random.PRNGKey(config.seed + 1))
      last.update(logger.write(iteration, ev, prefix='eval/', echo=False))
      print(f'  eval: goal {ev["goal_rate"]:.3f} | collision {ev["collision_rate"]:.3f} '
            f'| off-road {ev["offroad_rate"]:.3f}')
    if iteration % config.train.checkpoint_every == 0 or iteration == max_iters:
      ckpt.save(iteration, state, {'iteration': iteration, 'agent_steps': agent_steps,
                                   'variant': config.variant, 'num_params': num_params,
                                   'vocabulary': vocab_path})
    if config.train.video_every and iteration % config.train.video_every == 0:
      _render_episode(selfplay, state.params, eval_worlds, workdir, iteration)
  logger.close()
  ckpt.close()
  with open(os.path.join(workdir, 'final_metrics.json'), 'w') as f:
    json.dump({k: float(v) for k, v in last.items()}, f, indent=2)
  return last


def _bc_policy(config: ml_collections.ConfigDict, workdir: str, selfplay: SelfPlay) -> Any:
  """HR-PPO's behaviour-cloned anchor: loaded from ``hr_ppo.bc_checkpoint`` or trained."""
  from spacer_jax.spacer import bc
  if config.hr_ppo.bc_checkpoint:
    return bc.load_bc_policy(config.hr_ppo.bc_checkpoint)
  return bc.train_bc_policy(config, os.path.join(workdir, 'bc'), selfplay,
                            functools.partial(load_scenarios, config),
                            functools.partial(pool_seeds, config))


def _render_episode(selfplay: SelfPlay, params: Any, worlds: Worlds, workdir: str,
                    iteration: int) -> Optional[str]:
  from spacer_jax.viz import render
  one = jax.tree_util.tree_map(lambda x: x[:1], worlds)
  episode = jax.jit(functools.partial(selfplay.rollout, greedy=False))(
      params, one, jax.random.PRNGKey(iteration))
  final = jax.tree_util.tree_map(lambda x: x[0], episode.final_state)
  final = final.replace(road_edge_index=None)
  path = os.path.join(workdir, 'videos', f'rollout_{iteration:06d}.mp4')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  return render.save_video(final, path, start=selfplay.start_step,
                           end=int(final.timestep) + 1)


__all__ = ['eval_seeds', 'load_scenarios', 'load_vocab', 'make_selfplay', 'pool_seeds',
           'train_and_evaluate']
