"""Config of the motion-token vocabulary build (k-disk over logged segments).

Run:
  python -m experiments.build_vocabulary --config experiments/configs/tokens.py \
      --out /tmp/vocab_k200_s2.npz
Variants: ``tokens.py:tiny`` (seconds, for tests), ``tokens.py:smart`` (SMART parity:
2048 tokens of 0.5 s). Read WOMD TFRecords instead of generating with
``--config.data='/path/training.tfrecord-*'``.
"""

import ml_collections

# What experiments.build_vocabulary accepts, checked where the user typed it (before
# anything is written; grammar in spacer_jax.training.config_checks). Every variant's
# defaults pass. The builder's own limits: tokens.builder.BuildConfig.
RULES = {
    'num_tokens': 'int >= 2',  # Token 0 stands still; one more to move at all.
    'steps_per_token': 'int >= 1',
    'seed': 'int >= 0',
    'max_segments': 'int >= 1',
    'max_candidates': 'int >= 1',
    'jitter_fraction': 'float >= 0',
    'jitter_xy': 'float >= 0',
    'jitter_yaw': 'float >= 0',
    'primitives': 'bool',
    'coverage': 'float in (0, 1]',
    'cluster_length_scale': 'float > 0',
    'mirror_symmetric': 'bool',
    'data': 'str',
    'data_format': ('tf_example', 'scenario'),
    'max_records': 'int >= 1',
    'first_seed': 'int >= 0',
    'num_scenarios': 'int >= 1',
    'num_objects': 'int >= 1',
    'num_roadgraph_points': 'int >= 1',
    'eval_first_seed': 'int >= 0',
    'eval_num_scenarios': 'int >= 0',  # 0: no held-out check.
}


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # Vocabulary.
  config.num_tokens = 200  # K tokens per agent type, token 0 = standing still.
  config.steps_per_token = 2  # S simulator steps (0.1 s each) per token: 0.2 s, 5 Hz.
  config.seed = 0  # Builder sampling seed.
  config.max_segments = 12000  # Logged segments sampled per type.
  config.max_candidates = 1000  # Farthest-point candidates per type (at least 3 K used).
  config.jitter_fraction = 0.5  # Start-jittered copies, fraction of the sampled segments.
  config.jitter_xy = 0.1  # Start-position jitter std, metres.
  config.jitter_yaw = 0.02  # Start-heading jitter std, radians.
  config.primitives = True  # Add kinematic primitives (coverage of unseen speeds/turns).
  config.coverage = 1.0  # Fraction of points the K tokens cover within the tolerance.
  config.cluster_length_scale = 2.0  # Clustering box length / median length (heading weight).
  config.mirror_symmetric = True  # Every token's left-right mirror is a token too.
  # Build data: generated scenarios, unless `data` names TFRecords.
  config.data = ''  # Glob(s) of WOMD TFRecords; '' = the procedural generator.
  config.data_format = 'tf_example'  # tf_example | scenario (for `data`).
  config.max_records = 500  # Records read from `data` for the build.
  config.first_seed = 0  # Generator seeds first_seed .. first_seed + num_scenarios - 1.
  config.num_scenarios = 64  # Generated build scenarios.
  config.num_objects = 128  # Object slots per generated scenario.
  config.num_roadgraph_points = 1000  # Map slots (the map does not enter the build).
  # Held-out evaluation (generated, seeds disjoint from the build's).
  config.eval_first_seed = 100000  # Held-out generator seeds start here.
  config.eval_num_scenarios = 16  # Held-out scenarios tokenised after the build.
  if variant == 'tiny':
    config.num_tokens = 16
    config.num_scenarios = 3
    config.num_objects = 16
    config.max_segments = 1000
    config.max_candidates = 100
    config.eval_num_scenarios = 2
  elif variant == 'smart':
    config.num_tokens = 2048
    config.steps_per_token = 5
  elif variant not in ('', 'default'):
    raise ValueError(f'unknown tokens config variant {variant!r} (tiny | smart | default).')
  return config
