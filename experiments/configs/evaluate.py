"""Evaluation of sim-agent policies: realism, speed / size, closed-loop planner study.

Run:
  python -m experiments.evaluate --config=experiments/configs/evaluate.py \
      --workdir=/tmp/eval --checkpoints=spacer:/tmp/spacer,ppo:/tmp/ppo
Variants (``evaluate.py:<variant>``):
  default: 64 held-out generated scenes, 32 rollouts each (WOSAC), the full planner
    study (10 IDM planners, 3 Frenet planners, learned egos) on 16 scenes.
  ``cpu``: the same with fewer scenes and rollouts (about half an hour on 2 cores).
  ``tiny``: seconds (tests).
"""

import ml_collections

VARIANTS = ('cpu', 'tiny')

# What experiments.evaluate accepts, checked where the user typed it (before anything is
# written; grammar in spacer_jax.training.config_checks). Every variant's defaults pass.
RULES = {
    'seed': 'int >= 0',
    'fast_compile': 'bool',
    'baselines': 'str',
    'data.format': ('tf_example', 'scenario'),
    'data.num_scenarios': 'int >= 1',
    'data.eval_seed_offset': 'int >= 0',
    'data.num_objects': 'int >= 1',
    'data.num_roadgraph_points': 'int >= 1',
    'tokens.num_tokens': 'int >= 1',
    'tokens.steps_per_token': 'int >= 1',
    'realism.num_rollouts': 'int >= 1',
    'realism.num_steps': 'int >= 1',
    'realism.batch_size': 'int >= 1',
    'realism.top_k': 'int >= 1',
    'realism.temperature': 'float > 0',
    'realism.learned_top_k': 'int >= 0',  # 0 = the whole distribution.
    'realism.learned_greedy_too': 'bool',
    'speed.batch_size': 'int >= 1',
    'speed.repeats': 'int >= 1',
    'planners.enabled': 'bool',
    'planners.num_scenarios': 'int >= 1',
    'planners.num_idm': 'int >= 1',  # The study always runs the IDM grid.
    'planners.num_frenet': 'int >= 0',  # 0 = no Frenet planners.
    'planners.learned_egos': 'bool',
    'planners.modes': 'str',
    'planners.rollouts': 'int >= 1',
    'planners.bootstrap_resamples': 'int >= 1',
    'mesh.num_devices': 'int >= 0',  # 0 = all devices.
    'report.num_videos': 'int >= 0',
}


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  parts = [p for p in arg.split(',') if p and p != 'default']
  unknown = [p for p in parts if p not in VARIANTS]
  if unknown:
    raise ValueError(f'unknown evaluate config variant(s) {unknown} in {arg!r}; use '
                     f'{VARIANTS}.')
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.fast_compile = False  # Compile without backend optimisation (tests).
  # Policies evaluated besides --checkpoints: scripted ones and the default reference
  # ('reference:default' = the cached default reference, trained when missing).
  c.baselines = 'log_replay,constant_velocity,idm,reference:default'

  c.data = ml_collections.ConfigDict()
  c.data.files = ''  # Glob of WOMD TFRecords; '' = held-out generated scenes.
  c.data.format = 'tf_example'  # tf_example | scenario
  c.data.num_scenarios = 64
  c.data.eval_seed_offset = 10_000_000  # The trainers' held-out generator seeds.
  c.data.num_objects = 64
  c.data.num_roadgraph_points = 20000

  c.tokens = ml_collections.ConfigDict()
  c.tokens.vocabulary = ''  # Vocabulary artifact of the scripted policies; '' = default.
  c.tokens.num_tokens = 200  # Of the default vocabulary (scripted policies' step).
  c.tokens.steps_per_token = 2

  c.realism = ml_collections.ConfigDict()
  c.realism.num_rollouts = 32  # WOSAC.
  c.realism.num_steps = 40  # Decision steps (8 s).
  c.realism.batch_size = 4  # Scenes per compiled call.
  c.realism.top_k = 32  # Reference sampling.
  # Chosen on validation seeds (10_000_000 + i, 16 scenes x 8 rollouts): the packaged
  # reference scores meta 0.665 at T = 0.7 against 0.663 at T = 1 and 0.564 greedy, and
  # leaves the road less (0.086 vs 0.121 off-road excluding agents off-road in the log).
  c.realism.temperature = 0.7
  # Learned policies sample among their top-k tokens (0 = the whole distribution, 1 =
  # greedy; the paper reports SPACER with top-5), through the acting path of training
  # (spacer_jax.spacer.acting). With learned_greedy_too every learned checkpoint is
  # also scored greedy, as a second row '<label>@learned_top_k=1'.
  c.realism.learned_top_k = 5
  c.realism.learned_greedy_too = True

  c.speed = ml_collections.ConfigDict()
  c.speed.batch_size = 8  # Scenes per timed closed-loop call (same for every policy).
  c.speed.repeats = 3

  c.planners = ml_collections.ConfigDict()
  c.planners.enabled = True
  c.planners.num_scenarios = 16
  c.planners.num_idm = 10
  c.planners.num_frenet = 3
  c.planners.learned_egos = True  # Every learned checkpoint also drives the ego.
  # Sim-agent modes: 'log_replay', 'reference_nonreactive' (the first reference policy
  # fed the ego's logged motion, never its executed one), 'reference' (the same policy,
  # reactive) and every learned checkpoint ('learned').
  c.planners.modes = 'log_replay,reference_nonreactive,reference,learned'
  # Rollouts per scene of each stochastic mode (log replay runs once); every mean, rate
  # and rank correlation gets a scene-level bootstrap 95% interval.
  c.planners.rollouts = 4
  c.planners.bootstrap_resamples = 1000

  c.mesh = ml_collections.ConfigDict()
  # Devices of this process the realism rollouts are split over (0 = all); the
  # rollouts per scene must be a multiple of it.
  c.mesh.num_devices = 0

  c.report = ml_collections.ConfigDict()
  c.report.num_videos = 2  # Scenes rendered per policy (0 = none).

  if 'cpu' in parts:
    c.data.num_scenarios = 16
    c.data.num_objects = 32
    c.data.num_roadgraph_points = 6000
    c.realism.num_rollouts = 8
    c.planners.num_scenarios = 8
    c.planners.num_idm = 5
    c.planners.rollouts = 2
  if 'tiny' in parts:
    c.baselines = 'log_replay,constant_velocity'
    c.data.num_scenarios = 2
    c.data.num_objects = 16
    c.data.num_roadgraph_points = 4000
    c.tokens.num_tokens = 32  # The tiny training config's vocabulary.
    c.realism.num_rollouts = 2
    c.realism.num_steps = 4
    c.realism.learned_greedy_too = False
    c.realism.batch_size = 2
    c.speed.batch_size = 2
    c.speed.repeats = 1
    c.planners.num_scenarios = 2
    c.planners.num_idm = 2
    c.planners.num_frenet = 0  # Tested in tests/test_eval_planners.py.
    c.planners.modes = 'log_replay,learned'
    c.planners.rollouts = 1
    c.planners.bootstrap_resamples = 100
    c.report.num_videos = 1
    c.fast_compile = True
  return c
