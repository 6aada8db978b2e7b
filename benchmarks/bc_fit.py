"""How well does the behaviour-cloned start fit the log? Held-out NLL and speed bias.

SPACER's ``cpu`` recipe starts self-play from a policy cloned on logged tokens
(``spacer.bc``). Its training log reports the cross-entropy of single 4-world batches,
which swings by a nat from batch to batch; this trains (or resumes) a BC policy under a
``train_spacer`` config with overrides and scores it on the validation scenes' expert
episodes (seeds ``data.eval_seed_offset``+, goals shown as PPO's dropout draws them):

* NLL and top-1 accuracy of the expert token, overall and per agent type;
* for vehicles the log moves faster than 2 m/s: their NLL, the probability the policy
  puts on tokens within 0.3 m/s of the expert token's speed, its expected and greedy token
  speed minus the expert's, and the expected speed at temperature 0.5 (a decoding that
  sharpens a policy reveals where its mode lies: a fragmented vocabulary can leave the
  single stopping token as the mode while most mass is on moving ones).

  python benchmarks/bc_fit.py --workdir /tmp/runs/bcfit_default \\
      [--config=experiments/configs/spacer.py:cpu] [--config.policy.head_width=128] \\
      [--json OUT]

The config is ``train_spacer``'s (``--config.x=...`` overrides as in the binaries).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags
from speed_gaps import speed_gaps
from timing_utils import report_json

from spacer_jax.apps import train_spacer
from spacer_jax.spacer import bc, factory
from spacer_jax.spacer.observation import sample_goal_visible

TYPES = ('vehicle', 'pedestrian', 'cyclist')


def fit_report(params: Any, selfplay: Any, vocab: Any, worlds: Any,
               seed: int) -> dict[str, Any]:
  """Held-out NLL, top-1 and speed gaps of ``params`` on the expert episodes of
  ``worlds`` (see the module docstring)."""
  visible = sample_goal_visible(jax.random.PRNGKey(seed), worlds.goal.shape[:2],
                                selfplay.obs_config)
  obs, tokens, valid = jax.jit(lambda w, v: bc.expert_episode(selfplay, w, v))(worlds,
                                                                              visible)
  valid = bc.imitable(obs, tokens, valid)  # The rows the BC loss trains on.
  logits, _ = jax.jit(selfplay.policy.apply)(params, obs)
  log_p = jax.nn.log_softmax(logits, -1)
  nll = np.asarray(-jnp.take_along_axis(log_p, tokens[..., None], -1)[..., 0])
  top1 = np.asarray(jnp.argmax(logits, -1) == tokens)
  types = np.asarray(obs.type_index)
  valid = np.asarray(valid)
  out: dict[str, Any] = {'nll': float(nll[valid].mean()), 'top1': float(top1[valid].mean()),
                         'agent_steps': int(valid.sum())}
  for i, name in enumerate(TYPES):
    m = valid & (types == i)
    if m.any():
      out[f'nll_{name}'] = float(nll[m].mean())
      out[f'top1_{name}'] = float(top1[m].mean())
  gaps, moving = speed_gaps(logits, tokens, obs.type_index, valid, vocab)
  out['moving_vehicle_nll'] = float(nll[moving].mean())
  out.update({k: v for k, v in gaps.items() if k.startswith('moving_vehicle_')})
  return out


_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'experiments',
                        'configs', 'spacer.py')
_CONFIG = config_flags.DEFINE_config_file('config', f'{_CONFIGS}:cpu',
                                          'train_spacer config of the BC start.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'BC checkpoints (resumed if present).',
                               required=True)
_JSON = flags.DEFINE_string('json', '', 'write the report as JSON here')


def run(workdir: str, config: Any) -> dict[str, Any]:
  vocab, _ = factory.load_vocab(config)
  selfplay = factory.make_selfplay(config, vocab)
  source = train_spacer.ScenarioSource(config)
  os.makedirs(workdir, exist_ok=True)
  params = bc.train_bc_policy(config, workdir, selfplay, source.scenarios,
                              source.pool_indices)
  worlds = jax.jit(selfplay.prepare)(source.eval())
  report = fit_report(params, selfplay, vocab, worlds, config.seed + 11)
  return {'workdir': workdir, 'policy': config.policy.to_dict(), 'bc': config.bc.to_dict(),
          'validation_scenes': config.data.num_eval_scenarios, **report}


def main(argv: list[str]) -> None:
  del argv
  report_json(run(_WORKDIR.value, _CONFIG.value), _JSON.value)


if __name__ == '__main__':
  app.run(main)
