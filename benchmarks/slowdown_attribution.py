"""Which part of SPACER's objective pays for driving slower? A directional derivative.

Self-play from the behaviour-cloned start slows every vehicle down (docs/results.md).
This asks each term of the objective which way it pulls along one knob, a speed bias
``b``: the policy's token logits plus ``b`` times each token's mean speed (m/s), so
``b > 0`` picks faster tokens and ``b < 0`` slower ones, everything else unchanged. For
each ``b`` (and, with ``--temperatures``, each policy temperature: logits / T, a
sharper policy below 1) it rolls the biased policy out on the first training pool (the same random
keys for every ``b``, so the differences are not sampling noise alone) and measures,
per controlled agent and episode:

* the task return (goal, collision, off-road and any progress term, undiscounted) and
  the event rates;
* the likelihood reward ``sum_t log p_ref(a_t)`` and the KL ``sum_t KL(pi_b || p_ref)``
  of the SPACER objective (the reference's one teacher-forced pass over the episode,
  restricted to the feasible tokens, as training computes them);
* the objective ``task + alpha * likelihood - beta * KL`` at the run's alpha and beta;
* the executed speed of the vehicles, and at the visited states the reference's and the
  policy's expected token speed (what the KL pulls toward).

The term whose value rises as ``b`` falls is the one that teaches slowing down.

  python benchmarks/slowdown_attribution.py --run /tmp/runs/spacer_v5 \\
      --params /tmp/runs/spacer_bc8/bc [--biases=-0.5,-0.25,0,0.25,0.5] [--rollouts 2]

``--run`` is a train_spacer workdir (its config, anchor and scenes); ``--params`` a BC
workdir or a checkpoints folder (default: the run's last checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from timing_utils import report_json

from spacer_jax.apps import train_spacer
from spacer_jax.spacer import bc, factory
from spacer_jax.spacer import train as train_lib
from spacer_jax.spacer.losses import categorical_kl
from spacer_jax.spacer.policy import restrict_logits
from spacer_jax.tokens.feasibility import token_speeds
from spacer_jax.training import Checkpointer


@dataclasses.dataclass(frozen=True, eq=False)
class SpeedBiasedPolicy:
  """A policy network whose token logits gain ``bias * speed(token)``; ``speeds (3, K)``
  m/s by agent type. Its parameters are ``{'base': policy params, 'bias': scalar}`` so
  that every bias runs through one compiled episode. Infeasible tokens stay infeasible."""

  base: Any
  speeds: np.ndarray

  @property
  def num_tokens(self) -> int:
    return self.base.num_tokens

  def apply(self, params: Any, obs: Any) -> tuple[jax.Array, jax.Array]:
    logits, values = self.base.apply(params['base'], obs)
    shift = params['bias'] * jnp.asarray(self.speeds)[obs.type_index]
    return restrict_logits(logits / params['temperature'] + shift, obs), values


def load_params(path: str) -> Any:
  """Policy parameters of a BC workdir or a train_spacer checkpoints folder / run."""
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    path = os.path.join(path, 'checkpoints')
  if os.path.basename(os.path.normpath(path)) == 'checkpoints':
    out = Checkpointer(path).restore(None)
    if out is None:
      raise ValueError(f'{path} holds no checkpoint.')
    return out[1]['params']
  return bc.load_bc_policy(path)


def measure(episode: Any, anchor_lp: jax.Array, logits: jax.Array, speeds: jax.Array,
            alpha: float, beta: float) -> dict[str, float]:
  """Per-agent objective terms and speeds of one episode (see the module docstring)."""
  acted = episode.acted
  controlled = episode.controlled
  agents = jnp.maximum(jnp.sum(controlled), 1).astype(jnp.float32)
  taken = jnp.take_along_axis(anchor_lp, episode.actions[..., None], -1)[..., 0]
  likelihood = jnp.sum(jnp.where(acted, taken, 0.0)) / agents
  log_pi = jax.nn.log_softmax(logits, -1)
  kl = jnp.sum(categorical_kl(logits, anchor_lp, acted)) / agents
  task = jnp.sum(episode.task_reward) / agents
  types = episode.obs.type_index
  tok_speed = speeds[types]  # (T, W, N, K)
  vehicle = acted & (types == 0)
  nv = jnp.maximum(jnp.sum(vehicle), 1).astype(jnp.float32)
  vmean = lambda x: jnp.sum(jnp.where(vehicle, x, 0.0)) / nv
  ref_speed = jnp.sum(jnp.exp(anchor_lp) * tok_speed, -1)
  pi_speed = jnp.sum(jnp.exp(log_pi) * tok_speed, -1)
  executed = jnp.take_along_axis(tok_speed, episode.actions[..., None], -1)[..., 0]
  rates = train_lib.episode_metrics(episode)
  return {
      'task_return': task, 'likelihood': likelihood, 'kl': kl,
      'objective': task + alpha * likelihood - beta * kl,
      'goal_rate': rates['goal_rate'], 'collision_rate': rates['collision_rate'],
      'offroad_rate': rates['offroad_rate'],
      'vehicle_token_speed': vmean(executed),
      'vehicle_policy_expected_speed': vmean(pi_speed),
      'vehicle_reference_expected_speed': vmean(ref_speed),
      'vehicle_reference_minus_policy_speed': vmean(ref_speed - pi_speed),
  }


def attribution(run: str, params_path: str, biases: list[float], rollouts: int,
                temperatures: tuple[float, ...] = (1.0,), seed: int = 0) -> dict[str, Any]:
  with open(os.path.join(run, 'config.json')) as f:
    config = ml_collections.ConfigDict(factory.upgrade_config(json.load(f)))
  if config.variant != 'spacer':
    raise ValueError(f'{run} is a {config.variant!r} run; the attribution needs the '
                     'reference anchor of a spacer run.')
  vocab, vocab_path = factory.load_vocab(config)
  selfplay = factory.make_selfplay(config, vocab)
  worlds = jax.jit(selfplay.prepare)(train_spacer.ScenarioSource(config).pool(0))
  example = jax.tree_util.tree_map(lambda x: x[:1], worlds)
  reference = train_spacer.load_or_init_reference(config, selfplay, example, vocab_path)
  anchor = train_spacer.make_anchor(config, reference)
  params = load_params(params_path or run)
  speeds = token_speeds(vocab)
  alpha, beta = config.anchor.likelihood_weight, config.anchor.kl_coef
  keys = jax.random.split(jax.random.PRNGKey(seed), rollouts)
  out: dict[str, Any] = {'run': run, 'params': params_path or run, 'alpha': alpha,
                         'beta': beta, 'rollouts': rollouts,
                         'worlds': int(worlds.goal.shape[0]), 'by_bias': {}}
  sp = dataclasses.replace(selfplay, policy=SpeedBiasedPolicy(selfplay.policy,
                                                               np.asarray(speeds)))
  episode_fn = train_lib.make_episode_fn(sp, anchor)

  @jax.jit
  def one(bias, temperature, key):
    biased = {'base': params, 'bias': bias, 'temperature': temperature}
    episode, anchor_lp = episode_fn(biased, reference.params, worlds, key)
    logits, _ = sp.policy.apply(biased, episode.obs)
    return measure(episode, anchor_lp, logits, speeds, alpha, beta)

  for t in temperatures:
    for b in biases:
      rows = [jax.device_get(one(jnp.float32(b), jnp.float32(t), k)) for k in keys]
      label = f'T={t:g},b={b:g}'
      out['by_bias'][label] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
      print(label + ' ' + ' '.join(f'{k}={v:.3f}' for k, v in
                                   out['by_bias'][label].items()), flush=True)
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--run', required=True)
  parser.add_argument('--params', default='')
  parser.add_argument('--biases', default='-0.5,-0.25,0,0.25,0.5')
  parser.add_argument('--rollouts', type=int, default=2)
  parser.add_argument('--temperatures', default='1',
                      help='policy temperatures (logits / T) to cross with the biases')
  parser.add_argument('--json', default='')
  args = parser.parse_args()
  biases = [float(b) for b in args.biases.split(',')]
  temperatures = tuple(float(t) for t in args.temperatures.split(','))
  report_json(attribution(args.run, args.params, biases, args.rollouts, temperatures),
              args.json)


if __name__ == '__main__':
  main()
