"""Speed changes between consecutive tokens in generated logs: where the feasibility
bounds of ``spacer_jax.tokens.feasibility`` come from.

For every pair of consecutive valid expert tokens of the tokenised log (per agent
type) it reports the change of mean speed from one token to the next, and from the
logged speed over a token to the next expert token (the first decision of a rollout
compares those), as quantiles and maxima; and how many stops from >= 15 m/s within
one token the logs hold. Also the share of expert transitions the current
``DEFAULT_LIMITS`` keep feasible (must be 1.0).

  python benchmarks/token_speed_changes.py --scenes 400 [--json OUT]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
from timing_utils import report_json

from spacer_jax.data import generator
from spacer_jax.models.default_vocabulary import get_or_build_default_vocabulary
from spacer_jax.sim.builders import stack_states
from spacer_jax.tokens.feasibility import DEFAULT_LIMITS, motion_speed, token_speeds
from spacer_jax.tokens.tokenize import tokenize
from spacer_jax.tokens.vocabulary import TYPE_NAMES, agent_type_index


def measure(num_scenes: int, first_seed: int = 0, batch: int = 50) -> dict:
  vocab = get_or_build_default_vocabulary()
  gen = generator.GeneratorConfig(num_objects=32, num_roadgraph_points=6000)
  speeds = np.asarray(token_speeds(vocab))
  s = vocab.steps_per_token
  token_jumps = {t: [] for t in range(3)}
  log_jumps = {t: [] for t in range(3)}
  fast_stops = 0
  tok_fn = jax.jit(lambda st: tokenize(vocab, st.log_trajectory,
                                       st.object_metadata.object_types))
  for start in range(first_seed, first_seed + num_scenes, batch):
    seeds = range(start, min(start + batch, first_seed + num_scenes))
    states = stack_states([generator.generate_scenario(i, gen) for i in seeds])
    tok = jax.device_get(tok_fn(states))
    log = states.log_trajectory
    pose = np.stack([np.asarray(log.x), np.asarray(log.y)], -1)
    valid = np.asarray(log.valid)
    types = np.asarray(agent_type_index(states.object_metadata.object_types))
    ids, ok = tok.token_ids, tok.valid
    num_l = ids.shape[-1]
    # Logged mean speed over token l (steps l S -> (l + 1) S).
    starts, ends = pose[..., 0:num_l * s:s, :], pose[..., s:num_l * s + 1:s, :]
    logged = np.asarray(motion_speed(starts, ends, s))
    logged_ok = valid[..., 0:num_l * s:s] & valid[..., s:num_l * s + 1:s]
    tok_speed = speeds[types[..., None], ids]
    pair = ok[..., :-1] & ok[..., 1:]
    for t in range(3):
      of_type = (types == t)[..., None]
      a = pair & of_type
      token_jumps[t].append(np.abs(tok_speed[..., 1:] - tok_speed[..., :-1])[a])
      b = pair & logged_ok[..., :-1] & of_type
      log_jumps[t].append(np.abs(tok_speed[..., 1:] - logged[..., :-1])[b])
    fast_stops += int(np.sum(pair & (logged[..., :-1] >= 15.0) & (tok_speed[..., 1:] <= 1.0)))
  limits = DEFAULT_LIMITS.as_array()
  out = {'scenes': num_scenes, 'stops_from_15_mps_within_one_token': fast_stops, 'types': {}}
  for t in range(3):
    tj, lj = np.concatenate(token_jumps[t]), np.concatenate(log_jumps[t])
    row = {'transitions': int(tj.size)}
    for name, v in (('token_to_token', tj), ('logged_to_token', lj)):
      if v.size:
        row[name] = {f'q{q}': float(np.quantile(v, q / 100)) for q in (50, 99, 99.9)}
        row[name]['max'] = float(v.max())
        row[name]['feasible_share'] = float(np.mean(v <= limits[t]))
    row['limit'] = float(limits[t])
    out['types'][TYPE_NAMES[t]] = row
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--scenes', type=int, default=400)
  parser.add_argument('--first_seed', type=int, default=0)
  parser.add_argument('--json', default='')
  args = parser.parse_args()
  result = measure(args.scenes, args.first_seed)
  report_json(result, args.json)


if __name__ == '__main__':
  main()
