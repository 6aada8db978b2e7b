"""Do learned policies drive slower than the log? Their token speed along logged states.

Along the logged episodes of the validation scenes (expert states, the observation the
policy would see if it had driven like the log), it compares the mean speed of the
policy's tokens with the expert token's: the expectation under the policy's
distribution and its greedy token, for vehicles (and for those the log has moving
faster than 2 m/s). A negative gap every step compounds in closed loop: a car whose
policy picks tokens 1.5 m/s slower than the log's each 0.2 s stops within 2 s.

  python benchmarks/token_speed_bias.py --run /tmp/runs/spacer_inputs \\
      [--bc /tmp/runs/spacer_inputs/bc] [--scenes 6]

``--run`` is a train_spacer workdir (its last checkpoint and ``best/``, when present).
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import ml_collections
from speed_gaps import speed_gaps as token_speed_gaps
from timing_utils import report_json

from spacer_jax.apps import train_spacer
from spacer_jax.spacer import bc, factory
from spacer_jax.training import Checkpointer


def run_speed_gaps(run: str, bc_dir: str = '', scenes: int = 6) -> dict[str, dict[str, float]]:
  with open(os.path.join(run, 'config.json')) as f:
    config = ml_collections.ConfigDict(factory.upgrade_config(json.load(f)))
  vocab, _ = factory.load_vocab(config)
  selfplay = factory.make_selfplay(config, vocab)
  config.data.num_eval_scenarios = scenes
  worlds = jax.jit(selfplay.prepare)(train_spacer.ScenarioSource(config).eval())
  obs, tokens, valid = jax.jit(lambda w: bc.expert_episode(selfplay, w))(worlds)
  policies = {}
  if bc_dir:
    policies['bc'] = bc.load_bc_policy(bc_dir)
  for name, folder in (('last', run), ('best', os.path.join(run, 'best'))):
    ckpt = os.path.join(folder, 'checkpoints')
    if os.path.isdir(ckpt):
      step, state, _ = Checkpointer(ckpt).restore(None)
      policies[f'{name}@{step}'] = state['params']
  apply = jax.jit(selfplay.policy.apply)
  out = {}
  for name, params in policies.items():
    logits, _ = apply(params, obs)
    out[name] = token_speed_gaps(logits, tokens, obs.type_index, valid, vocab)[0]
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--run', required=True)
  parser.add_argument('--bc', default='')
  parser.add_argument('--scenes', type=int, default=6)
  parser.add_argument('--json', default='')
  args = parser.parse_args()
  report_json(run_speed_gaps(args.run, args.bc, args.scenes), args.json)


if __name__ == '__main__':
  main()
