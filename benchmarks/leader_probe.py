"""Does the reference read the car ahead? Two teacher-forced probes (no sampling).

1. Generated traffic (with incidents): each moving vehicle's next-token NLL with the
   scene as it is and with every other agent removed, split by whether a much slower
   car (under half its speed) is within 40 m ahead in its lane. The difference is what
   the other agents are worth to the prediction.
2. The car-following scenes (``eval.car_following``, stopped and braking leaders on the
   straight road), teacher-forced on the careful log: the follower's expected next
   speed over the first 2 s, with the leader and alone, and the log's NLL both ways.
   A leader that changes nothing means the model continues its own motion.

  python benchmarks/leader_probe.py [--reference PATH] [--scenes 8] [--json OUT]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from timing_utils import report_json

from spacer_jax.data.generator import GeneratorConfig, generate_scenario
from spacer_jax.data.stats import objects_ahead
from spacer_jax.eval import car_following as cf
from spacer_jax.models import train as train_lib
from spacer_jax.models.api import reference_log_probs
from spacer_jax.models.checkpoint import load_reference
from spacer_jax.models.default import get_or_train_default_reference
from spacer_jax.models.reference import position_valid
from spacer_jax.sim.builders import stack_states
from spacer_jax.tokens.vocabulary import load_vocabulary

SEED_OFFSET = 40_000_000  # neither training, validation nor held-out seeds
TOKEN_SECONDS = 0.2


def _token_nll(ref, inputs):
  lp = reference_log_probs(ref.config, ref.params, inputs)
  target = inputs.token_ids[..., 1:]
  return -jnp.take_along_axis(lp[..., :-1, :], target[..., None], -1)[..., 0]


def _slower_leader(poses, speed, valid):
  """(B, N, L) whether a car at under half the agent's speed is within 40 m ahead (2 m
  laterally, headings within 0.5 rad)."""
  pos = np.asarray(poses)[..., 1:, :]
  speed, valid = np.asarray(speed), np.asarray(valid)
  out = np.zeros(speed.shape, bool)
  for i in range(speed.shape[0]):
    _, ahead = objects_ahead(pos[i, ..., 0], pos[i, ..., 1], pos[i, ..., 2], valid[i],
                             max_gap=40.0, lane_half_width=2.0, same_direction=0.5)
    slower = speed[i][None] < 0.5 * speed[i][:, None]  # (follower, other, L)
    out[i] = (ahead & slower).any(1)
  return out


def traffic_probe(ref, vocab, num_scenes: int) -> dict:
  data = GeneratorConfig(num_objects=32, num_roadgraph_points=6000, incident_rate=1.0)
  scenes = stack_states([generate_scenario(s, data)
                         for s in range(SEED_OFFSET, SEED_OFFSET + num_scenes)])
  inputs = jax.jit(train_lib.make_inputs, static_argnums=2)(vocab, scenes, ref.config)
  nll = jax.jit(lambda x: _token_nll(ref, x))
  n = inputs.agent_valid.shape[-1]

  @jax.jit
  def alone(x):
    def one(i):
      return _token_nll(ref, x.replace(agent_valid=x.agent_valid & (jnp.arange(n) == i)))[:, i]
    return jax.lax.map(one, jnp.arange(n)).transpose(1, 0, 2)

  full, solo = np.asarray(nll(inputs)), np.asarray(alone(inputs))
  valid = np.asarray(position_valid(inputs))
  poses = np.asarray(inputs.token_poses)
  speed = np.linalg.norm(np.diff(poses[..., :2], axis=-2), axis=-1) / TOKEN_SECONDS
  slow = _slower_leader(poses, speed, valid)[..., :-1]
  vehicle = (np.asarray(inputs.agent_type) == 0)[..., None]
  moving = vehicle & (speed[..., :-1] > 5.0) & valid[..., :-1] & valid[..., 1:]
  out = {}
  for name, m in (('moving', moving), ('slower_leader', moving & slow),
                  ('no_slower_leader', moving & ~slow)):
    out[name] = {'tokens': int(m.sum()), 'nll': float(full[m].mean()),
                 'nll_alone': float(solo[m].mean()),
                 'others_worth': float(solo[m].mean() - full[m].mean())}
  return out


def following_probe(ref, vocab) -> dict:
  cases = [c for c in cf.default_cases() if c.leader in ('stopped', 'braking')
           and not c.radius]
  make = jax.jit(train_lib.make_inputs, static_argnums=2)
  log_probs = jax.jit(lambda x: reference_log_probs(ref.config, ref.params, x))
  token_speed = jnp.linalg.norm(vocab.poses[0, :, -1, :2], axis=-1) / TOKEN_SECONDS

  def read(scenes):
    x = make(vocab, scenes, ref.config)
    lp = log_probs(x)
    expected = jnp.sum(jnp.exp(lp) * token_speed, -1)[:, cf.FOLLOWER]
    target = x.token_ids[..., 1:]
    nll = -jnp.take_along_axis(lp[..., :-1, :], target[..., None], -1)[..., 0]
    return np.asarray(expected), np.asarray(nll[:, cf.FOLLOWER])

  (with_speed, with_nll) = read(cf.follow_scenes(cases))
  (alone_speed, alone_nll) = read(cf.follow_scenes(cases, with_leader=False))
  first = slice(5, 15)  # the tokens of the first 2 s after the current step
  out = {}
  for i, c in enumerate(cases):
    out[c.name] = {'expected_speed_with_leader': with_speed[i, first].tolist(),
                   'expected_speed_alone': alone_speed[i, first].tolist(),
                   'log_nll_with_leader': float(with_nll[i, 5:25].mean()),
                   'log_nll_alone': float(alone_nll[i, 5:25].mean())}
    print(f'{c.name}: E[next speed] with leader '
          + ' '.join(f'{v:5.1f}' for v in with_speed[i, first][::2]) + ' | alone '
          + ' '.join(f'{v:5.1f}' for v in alone_speed[i, first][::2])
          + f' | log NLL {out[c.name]["log_nll_with_leader"]:.2f} vs '
          f'{out[c.name]["log_nll_alone"]:.2f}', flush=True)
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--reference', default='', help='reference artifact (default: the '
                      'default reference)')
  parser.add_argument('--scenes', type=int, default=8)
  parser.add_argument('--json', default='')
  args = parser.parse_args()
  path = args.reference or get_or_train_default_reference()
  ref = load_reference(path)
  vocab = load_vocabulary(ref.vocabulary_path)
  traffic = traffic_probe(ref, vocab, args.scenes)
  for name, row in traffic.items():
    print(f'traffic, {name}: {row["tokens"]} tokens, NLL {row["nll"]:.3f}, alone '
          f'{row["nll_alone"]:.3f}: the other agents are worth {row["others_worth"]:+.3f} '
          'nats', flush=True)
  report_json({'reference': path, 'traffic': traffic,
               'following': following_probe(ref, vocab)}, args.json)


if __name__ == '__main__':
  main()
