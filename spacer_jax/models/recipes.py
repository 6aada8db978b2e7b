"""Reference-model training recipes: the one source of the ``train_reference`` configs.

``experiments/configs/reference.py`` (what users pass to ``--config``) and the library's
default reference (``spacer_jax.models.default``, which trains the ``cpu`` or ``tiny``
recipe into the cache when nothing is packaged) both read :func:`get_config`, so a
default changes in one place only.

Variants (``reference.py:<variant>``, combine with commas, e.g. ``cpu,catk``):
  ``base`` (default): the paper's 3.2M-parameter model on 64-agent generated scenes.
  ``cpu``: the default reference, trained on this 2-core CPU in under an hour
    (``nano`` size, 32 agents, the whole map, 40 min budget).
  ``tiny``: seconds (tests; 32 tokens, like ``spacer.py:tiny`` and ``evaluate.py:tiny``).
  ``catk``: closed-loop fine-tuning (CAT-K) of ``init_checkpoint`` (a reference
    artifact or train_reference workdir).
  ``follow``: car following (issue 26): the agent->agent keys carry relative motion
    (closing speed) and half the generated scenes hold incidents (stalled cars,
    slow-downs) the traffic behind must react to. With ``init_checkpoint`` the loaded
    model gains the motion inputs with zero weights, so it starts as it was.
    ``--config.model.history_dropout`` (e.g. 0.5) hides training positions' own history
    so that braking has to be read from the scene, not continued.
"""

import ml_collections

VARIANTS = ('base', 'cpu', 'tiny', 'catk', 'follow')

# What train_reference accepts, checked where the user typed it
# (experiments.train_reference, before anything is written; grammar in
# spacer_jax.training.config_checks). Every variant's defaults pass.
RULES = {
    'seed': 'int >= 0',
    'init_checkpoint': 'str',
    'model.size': ('nano', 'mini', 'base', 'tiny'),  # models.config.SIZES + 'tiny'.
    'model.num_map_segments': 'int >= 1',
    'model.dropout': 'float in [0, 1)',
    'model.agent_motion_features': 'bool',
    'model.history_dropout': 'float in [0, 1)',
    'tokens.num_tokens': 'int >= 1',
    'tokens.steps_per_token': 'int >= 1',
    'data.format': ('tf_example', 'scenario'),
    'data.num_train_scenarios': 'int >= 1',
    'data.num_eval_scenarios': 'int >= 1',
    'data.eval_seed_offset': 'int >= 0',
    'data.num_objects': 'int >= 1',
    'data.num_roadgraph_points': 'int >= 1',
    'data.chunk': 'int >= 1',
    'data.incident_rate': 'float in [0, 1]',
    'train.batch_size': 'int >= 1',
    'train.num_steps': 'int >= 1',
    'train.lr': 'float > 0',
    'train.warmup_steps': 'int >= 0',
    'train.weight_decay': 'float >= 0',
    'train.grad_clip': 'float > 0',  # A clip at 0 zeroes every gradient.
    'train.label_smoothing': 'float in [0, 1)',  # 1 would drop the targets entirely.
    'train.noise_top_k': 'int >= 1',
    'train.noise_prob': 'float in [0, 1]',
    'train.log_every': 'int >= 1',  # Step counts divide by these three.
    'train.eval_every': 'int >= 1',
    'train.checkpoint_every': 'int >= 1',
    'train.stop_at': 'int >= 0',  # 0 = run to num_steps.
    'train.time_budget_s': 'float >= 0',
    'train.fast_compile': 'bool',
    'eval.batch_size': 'int >= 1',
    'eval.rollout_scenarios': 'int >= 0',  # 0 = skip the closed-loop eval.
    'eval.num_samples': 'int >= 1',
    'eval.num_steps': 'int >= 1',
    'eval.top_k': 'int >= 1',
    'eval.temperature': 'float > 0',
    'catk.enabled': 'bool',
    'catk.top_k': 'int >= 1',
}


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  parts = [p for p in arg.split(',') if p and p != 'default']
  unknown = [p for p in parts if p not in VARIANTS]
  if unknown:
    raise ValueError(f'unknown reference config variant(s) {unknown} in {arg!r}; use '
                     f'{VARIANTS}, e.g. "cpu" or "cpu,catk".')
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.init_checkpoint = ''  # Reference artifact to start from ('' = fresh init).

  c.model = ml_collections.ConfigDict()
  c.model.size = 'base'  # nano | mini | base (spacer_jax.models.config.SIZES).
  # Static map segments per scene (5 m each), nearest to any agent first: 2048 hold the
  # whole map at 20000 roadgraph points, so every agent sees the road wherever it drives.
  c.model.num_map_segments = 2048
  c.model.dropout = 0.1
  # Relative motion (closing speed) in the agent->agent keys; see ``follow``.
  c.model.agent_motion_features = False
  # Training positions that see none of their own history (ReferenceConfig).
  c.model.history_dropout = 0.0

  c.tokens = ml_collections.ConfigDict()
  c.tokens.vocabulary = ''  # Vocabulary artifact path; '' = the cached default.
  c.tokens.num_tokens = 200
  c.tokens.steps_per_token = 2

  c.data = ml_collections.ConfigDict()
  c.data.files = ''  # Glob of WOMD TFRecords; '' = the synthetic generator.
  c.data.format = 'tf_example'  # tf_example | scenario
  c.data.eval_files = ''  # Held-out records; '' = records after the train ones.
  c.data.num_train_scenarios = 2000  # Fixed train set (generator seeds 0..N-1).
  c.data.num_eval_scenarios = 64  # Held-out scenes for the teacher-forced eval.
  c.data.eval_seed_offset = 10_000_000  # Held-out generator seeds start here.
  c.data.num_objects = 64
  c.data.num_roadgraph_points = 20000
  c.data.chunk = 64  # Scenes tokenised per compiled call when preparing the data.
  # Share of generated scenes with incidents (GeneratorConfig.incident_rate).
  c.data.incident_rate = 0.0

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 16
  c.train.num_steps = 20000
  c.train.lr = 5e-4
  c.train.warmup_steps = 500
  c.train.weight_decay = 0.01
  c.train.grad_clip = 1.0
  c.train.label_smoothing = 0.1  # As in the paper.
  # Noised tokenisation (SMART): each training token is, with probability noise_prob,
  # one of its noise_top_k nearest, and the targets are the tokens that steer back to
  # the log; teaches the closed-loop recovery that exact teacher forcing never shows.
  c.train.noise_top_k = 5
  c.train.noise_prob = 0.5
  c.train.log_every = 50
  c.train.eval_every = 1000
  c.train.checkpoint_every = 500
  c.train.stop_at = 0  # Stop (as if killed) after this step; 0 = run to num_steps.
  c.train.time_budget_s = 0.0  # Stop, evaluate and export after this long; 0 = none.
  c.train.fast_compile = False  # CPU: compile without backend optimisation (tests).

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 16  # Teacher-forced eval chunk.
  c.eval.rollout_scenarios = 16  # Held-out scenes rolled out closed loop (0 = skip).
  c.eval.num_samples = 4  # Rollouts per scene for minADE.
  c.eval.num_steps = 40  # Token steps (40 = 8 s).
  c.eval.top_k = 32
  c.eval.temperature = 1.0

  c.catk = ml_collections.ConfigDict()
  c.catk.enabled = False
  c.catk.top_k = 32  # Candidates per step; the closest to the log is the target.

  if 'cpu' in parts:
    c.model.size = 'nano'
    c.model.num_map_segments = 640  # The whole map at 6000 points (~550 segments).
    c.data.num_train_scenarios = 1024  # ~90 s to generate; noised tokens reuse them well.
    c.data.num_eval_scenarios = 32
    c.data.num_objects = 32
    c.data.num_roadgraph_points = 6000
    c.train.batch_size = 8
    c.train.num_steps = 1200  # ~40 min at the ~6k tokens/s of the map-aware nano model.
    # Sharp, calibrated distributions: sampled closed-loop rollouts and SPACER's anchor
    # both read the full distribution, and smoothing spreads mass over tokens that leave
    # the lane.
    c.train.label_smoothing = 0.0
    c.train.lr = 1e-3
    c.train.warmup_steps = 100
    c.train.log_every = 25
    c.train.eval_every = 1200  # Closed-loop eval once, at the end.
    c.train.checkpoint_every = 250
    c.train.time_budget_s = 40 * 60.0
    c.eval.batch_size = 8
    c.eval.rollout_scenarios = 8
    c.eval.num_samples = 2
  if 'tiny' in parts:
    c.model.size = 'tiny'
    c.model.num_map_segments = 32
    c.model.dropout = 0.0
    c.tokens.num_tokens = 32  # What spacer.py:tiny and evaluate.py:tiny expect: they chain.
    c.data.num_train_scenarios = 4
    c.data.num_eval_scenarios = 2
    c.data.num_objects = 16
    c.data.num_roadgraph_points = 4000
    c.data.chunk = 4
    c.train.batch_size = 4
    c.train.num_steps = 8
    c.train.lr = 1e-2
    c.train.warmup_steps = 0
    c.train.log_every = 1
    c.train.eval_every = 100
    c.train.checkpoint_every = 2
    c.train.fast_compile = True
    c.eval.batch_size = 2
    c.eval.rollout_scenarios = 2
    c.eval.num_samples = 2
    c.eval.num_steps = 4
    c.eval.top_k = 4
    c.catk.top_k = 4
  if 'follow' in parts:
    c.model.agent_motion_features = True
    c.data.incident_rate = 0.5
  if 'catk' in parts:
    c.catk.enabled = True
    c.train.lr = min(c.train.lr, 1e-4)  # Fine-tuning: a small step from the reference.
    c.train.warmup_steps = min(c.train.warmup_steps, 50)
    if 'tiny' not in parts:
      c.train.num_steps = 500 if 'cpu' in parts else 2000
  return c
