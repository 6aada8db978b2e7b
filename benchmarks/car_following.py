"""Does a sim-agent policy follow cars? The car-following scene set in closed loop.

Runs :mod:`spacer_jax.eval.car_following`'s scenes (a stopped, braking, slower or
queued leader ahead of a follower at 10-30 m/s, straight and in a bend) with the policy
driving the follower, ``--rollouts`` sampled rollouts each, and reports the share of
rollouts without contact per case and overall (the reference issue's target: >= 95%),
plus log replay and IDM as sanity rows. The ablation runs the policy again with the
leaders removed (the same road, the follower alone): a follower whose final speed does
not drop when a stopped car stands ahead is not reacting to it. For a reference with
relative motion inputs (``agent_motion_features``), ``--motion_ablation`` also runs it
with those inputs' weights zeroed: what the closing speed adds to the relative pose.

  python benchmarks/car_following.py --policy reference:default --rollouts 8 --json OUT
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
from timing_utils import report_json

from spacer_jax.eval import car_following as cf
from spacer_jax.eval.sim_agent_policies import load_policy


def _without_motion_inputs(policy, params):
  """``params`` with the agent->agent relative-motion input weights set to zero."""
  from spacer_jax.models.features import NUM_RELATIVE_FEATURES
  from spacer_jax.models.train import map_agent_rel_kernel
  if not getattr(getattr(policy, 'config', None), 'agent_motion_features', False):
    raise SystemExit(f'--motion_ablation: {type(policy).__name__} has no relative-motion '
                     'inputs (a reference with agent_motion_features)')
  return map_agent_rel_kernel(params, lambda k: k.at[NUM_RELATIVE_FEATURES:].set(0.0))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--policy', default='reference:default',
                      help='policy spec (experiments.evaluate syntax, without @overrides)')
  parser.add_argument('--top_k', type=int, default=32, help='reference sampling (default: '
                      "evaluate.py's 32)")
  parser.add_argument('--temperature', type=float, default=0.7)
  parser.add_argument('--learned_top_k', type=int, default=5)
  parser.add_argument('--rollouts', type=int, default=8)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--motion_ablation', action='store_true',
                      help='also run the reference with its relative-motion weights zeroed')
  parser.add_argument('--json', help='write the results to this JSON file')
  args = parser.parse_args()

  cases = cf.default_cases()
  scenes = cf.follow_scenes(cases)
  env = cf.follow_env()
  results = {}
  for spec in ('log_replay', 'idm', args.policy):
    policy, params = load_policy(spec, env=env, top_k=args.top_k,
                                 temperature=args.temperature,
                                 learned_top_k=args.learned_top_k)
    vocab = getattr(policy, 'vocab', None)
    if vocab is None:
      from spacer_jax.tokens.builder import primitive_vocabulary
      vocab = primitive_vocabulary(16)
    rollouts = 1 if spec in ('log_replay', 'idm') else args.rollouts
    out = cf.run_following(policy, params, cases, jax.random.PRNGKey(args.seed),
                           vocab=vocab, rollouts=rollouts, scenes=scenes)
    results[spec] = out
    by_kind = {}
    for case in cases:
      by_kind.setdefault(case.leader, []).append(out['cases'][case.name]['no_contact'])
    kinds = ' | '.join(f'{k} {np.mean(v):.3f}' for k, v in by_kind.items())
    print(f"{spec}: no contact {out['no_contact']:.3f} (behind {out['behind']:.3f}) | "
          f'{kinds}', flush=True)
  alone = cf.run_following(policy, params, cases, jax.random.PRNGKey(args.seed),
                           vocab=vocab, rollouts=args.rollouts,
                           scenes=cf.follow_scenes(cases, with_leader=False))
  results[f'{args.policy} without leaders'] = alone
  if args.motion_ablation:
    motion = _without_motion_inputs(policy, params)
    blind = cf.run_following(policy, motion, cases, jax.random.PRNGKey(args.seed),
                             vocab=vocab, rollouts=args.rollouts, scenes=scenes)
    results[f'{args.policy} without motion inputs'] = blind
    print(f"{args.policy} without motion inputs: no contact {blind['no_contact']:.3f} "
          f"(behind {blind['behind']:.3f})", flush=True)
  for kind in ('stopped', 'queue', 'braking', 'slower'):
    names = [c.name for c in cases if c.leader == kind]
    speed = lambda r, names=names: np.mean([r['cases'][n]['final_speed'] for n in names])
    print(f'{kind}: final speed with leader {speed(out):.1f} m/s, alone {speed(alone):.1f} m/s',
          flush=True)
  report_json({'settings': vars(args), 'results': results}, args.json or '')


if __name__ == '__main__':
  main()
