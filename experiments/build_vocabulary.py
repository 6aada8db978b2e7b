"""Builds a motion-token vocabulary and reports its held-out tokenisation error.

  python -m experiments.build_vocabulary --config experiments/configs/tokens.py \
      --out /tmp/vocab_k200_s2.npz [--config.num_tokens=400]

Writes ``--out`` (.npz + .json metadata) and prints per type the build tolerance and
quantisation error (clustering metric) and the mean corner error of tokenising held-out
generated logs (real boxes, rolling from the reconstruction).
"""

import dataclasses
import json
import time

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.configs import tokens as tokens_config
from spacer_jax.data.generator import GeneratorConfig, generate_scenario
from spacer_jax.tokens import builder, vocabulary
from spacer_jax.tokens.tokenize import mean_error_by_type
from spacer_jax.training.config_checks import check_command_line, validate
from spacer_jax.training.console import (
    parse_flags,
    quiet_third_party_logging,
    report_user_errors,
)

_DEFAULT_CONFIG = 'experiments/configs/tokens.py'
if __name__ == '__main__':
  # Unknown --config.* keys get one line and a did-you-mean. Here, not next to app.run:
  # without --config, DEFINE_config_file parses the default and its overrides at once.
  check_command_line(_DEFAULT_CONFIG)
_CONFIG = config_flags.DEFINE_config_file(
    'config', _DEFAULT_CONFIG, 'Vocabulary configuration.', lock_config=True)
_OUT = flags.DEFINE_string('out', None, 'Output .npz path.', required=True)


def _build_states(config):
  """Build scenarios and a JSON description of where they come from."""
  if config.data:
    from spacer_jax.data.womd import make_dataset, set_format_flag
    set_format_flag('--config.data_format')  # How a wrong-format hint names it here.
    dataset = make_dataset(config.data, format=config.data_format, batch_size=None)
    states = (s for _, s in zip(range(config.max_records), dataset))
    return states, {'kind': 'womd', 'pattern': config.data, 'format': config.data_format,
                    'max_records': config.max_records}
  # The map does not enter the build: every object is logged, also beyond a small map.
  gen = GeneratorConfig(num_objects=config.num_objects,
                        num_roadgraph_points=config.num_roadgraph_points, log_off_map=True)
  seeds = list(range(config.first_seed, config.first_seed + config.num_scenarios))
  return (generate_scenario(s, gen) for s in seeds), {
      'kind': 'generator', 'seeds': builder.describe_seeds(seeds),
      'generator_config': builder.jsonable(dataclasses.asdict(gen))}


def main(argv):
  del argv
  quiet_third_party_logging()
  config = _CONFIG.value
  # Bad values are refused where they were typed, before any work or file.
  validate(config, tokens_config.RULES)
  build = builder.BuildConfig(
      num_tokens=config.num_tokens, steps_per_token=config.steps_per_token,
      max_segments=config.max_segments, max_candidates=config.max_candidates,
      jitter_fraction=config.jitter_fraction, jitter_xy=config.jitter_xy,
      jitter_yaw=config.jitter_yaw, primitives=config.primitives, coverage=config.coverage,
      cluster_length_scale=config.cluster_length_scale,
      mirror_symmetric=config.mirror_symmetric, seed=config.seed)
  start = time.perf_counter()
  states, source = _build_states(config)
  segments = builder.extract_segments(states, build.steps_per_token)
  vocab, metadata = builder.build_vocabulary(segments, build, source)
  metadata['build_seconds'] = time.perf_counter() - start
  gen = GeneratorConfig(num_objects=config.num_objects,
                        num_roadgraph_points=config.num_roadgraph_points, log_off_map=True)
  held_out = range(config.eval_first_seed, config.eval_first_seed + config.eval_num_scenarios)
  errors = mean_error_by_type(vocab, (generate_scenario(s, gen) for s in held_out))
  metadata['held_out'] = {'seeds': builder.describe_seeds(list(held_out)), 'errors': errors}
  vocabulary.save_vocabulary(_OUT.value, vocab, metadata)
  logging.info('wrote %s in %.1f s', _OUT.value, metadata['build_seconds'])
  print(f'vocabulary K={build.num_tokens} S={build.steps_per_token} -> {_OUT.value} '
        f'(build {metadata["build_seconds"]:.1f} s)')
  for t in metadata['types']:
    e = errors[t['type']]
    print(f'  {t["type"]:10s} segments {t["num_segments"]:7d}  tolerance {t["tolerance_m"]:.3f} m'
          f'  build quantisation {t["quantization_error_m"]:.3f} m (cluster box)  held-out mean '
          f'{e["mean_error_m"]:.3f} m (max {e["max_error_m"]:.3f}, {e["num_tokens"]} tokens)')
  print(json.dumps({'held_out_mean_error_m': errors['all']['mean_error_m']}))


if __name__ == '__main__':
  app.run(report_user_errors(main), flags_parser=parse_flags)
