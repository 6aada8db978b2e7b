"""SPACER / PPO / HR-PPO self-play training (paper defaults; see shared spacer.md).

Run:
  python -m experiments.train_spacer --config=experiments/configs/spacer.py \
      --workdir=/tmp/spacer [--reference_checkpoint=DIR]
Variants (``spacer.py:<variant>``):
  ``spacer`` (default): likelihood reward alpha and KL(pi || p_ref) with beta.
  ``ppo``: task reward only, no anchor.
  ``hr_ppo``: KL to a behaviour-cloned policy of the same architecture (trained first on
  the logs by the BC trainer when no ``--bc_checkpoint`` is given).
  ``cpu``: the README's main job: the whole pipeline on a 2-core CPU in about an hour
    after the default reference (32 agent slots, 16 worlds, smaller observation and
    PPO batch); combine as ``cpu,ppo`` / ``cpu,hr_ppo`` for the baselines.
  ``tiny``: seconds on a CPU (tests); combine as ``tiny,ppo``.
"""

import dataclasses

import ml_collections

from spacer_jax.spacer.observation import ObservationConfig

VARIANTS = ('spacer', 'ppo', 'hr_ppo')

# What train_spacer accepts, checked where the user typed it (experiments.train_spacer,
# before anything is written; grammar in spacer_jax.training.config_checks). Every
# variant's defaults pass (tests/test_config_checks.py).
RULES = {
    'variant': VARIANTS,
    'seed': 'int >= 0',  # Generator seeds derive from it; numpy refuses negative ones.
    'data.format': ('tf_example', 'scenario'),
    'data.num_train_scenarios': 'int >= 1',
    'data.pool_size': 'int >= 1',
    'data.refresh_every': 'int >= 1',  # Iterations per pool (the iteration is divided by it).
    'data.num_objects': 'int >= 1',
    'data.num_roadgraph_points': 'int >= 1',
    'data.eval_seed_offset': 'int >= 0',
    'data.num_eval_scenarios': 'int >= 1',
    'tokens.num_tokens': 'int >= 1',
    'tokens.steps_per_token': 'int >= 1',
    'reference.size': ('nano', 'mini', 'base', 'tiny'),  # models.config.SIZES + 'tiny'.
    'env.num_worlds': 'int >= 1',
    'env.policy_steps': 'int >= 1',
    'obs.max_partners': 'int >= 1',
    'obs.partner_radius': 'float > 0',
    'obs.num_road_points': 'int >= 1 and <= obs.max_prepared_points',
    'obs.max_prepared_points': 'int >= 1',
    'obs.goal_dropout': 'float in [0, 1]',
    'obs.road_spacing': 'float > 0',
    'obs.max_light_points': 'int >= 1',
    'obs.light_radius': 'float > 0',
    'obs.anchor_stride': 'int >= 1',
    'obs.speed_scale': 'float > 0',
    'obs.size_scale': 'float > 0',
    'obs.road_scale': 'float > 0',
    'obs.goal_scale': 'float > 0',
    'obs.motion_lag_steps': 'int >= 0',  # 0 = no motion features.
    'obs.num_edge_points': 'int >= 0 and < obs.num_road_points',
    'obs.token_speed_steps': 'int >= 0',  # 0 = the last sub-step's velocity.
    'obs.feasible_actions': 'bool',
    'policy.network': 'str',  # A registered name (spacer.policy.register_policy_network).
    'policy.width': 'int >= 1',
    'policy.hidden': 'int >= 1',
    'policy.head_width': 'int >= 1',
    'policy.head_shared': 'bool',
    'policy.head_shared_output': 'bool',
    'policy.head_rank': 'int >= 0',  # 0 = no bottleneck.
    'reward.goal_weight': 'float >= 0',
    'reward.collision_weight': 'float >= 0',
    'reward.offroad_weight': 'float >= 0',
    'reward.goal_radius': 'float > 0',
    'reward.after_goal': ('remove', 'freeze', 'continue'),  # rewards.TERMINAL_BEHAVIOURS.
    'reward.after_collision': ('remove', 'freeze', 'continue'),
    'reward.after_offroad': ('remove', 'freeze', 'continue'),
    'reward.exempt_log_offroad': 'bool',
    'reward.goal_after_infraction': 'bool',
    'reward.progress_weight': 'float >= 0',
    'reward.progress_min_distance': 'float > 0',
    'loss.clip_eps': 'float > 0',
    'loss.value_coef': 'float >= 0',
    'loss.entropy_coef': 'float >= 0',
    'loss.normalize_advantages': 'bool',
    'ppo.lr': 'float > 0',
    'ppo.adam_eps': 'float > 0',
    'ppo.gamma': 'float in (0, 1]',
    'ppo.gae_lambda': 'float in [0, 1]',
    'ppo.epochs': 'int >= 1',
    'ppo.num_minibatches': 'int >= 1',
    'ppo.max_grad_norm': 'float > 0',  # A clip at 0 zeroes every gradient.
    'ppo.chunk_rows': 'int >= 0',  # 0 = by backend.
    'ppo.critic_warmup_steps': 'int >= 0',
    'anchor.likelihood_weight': 'float >= 0',
    'anchor.kl_coef': 'float >= 0',
    'anchor.temperature': 'float > 0',
    'anchor.kl_warmup_factor': 'float >= 0',
    'anchor.kl_warmup_steps': 'int >= 0',
    'bc.steps': 'int >= 1',
    'bc.batch_worlds': 'int >= 1',
    'bc.lr': 'float > 0',
    'bc.lr_schedule': ('constant', 'cosine'),  # spacer.bc.BC_LR_SCHEDULES.
    'bc.num_pools': 'int >= 1',
    'mesh.num_devices': 'int >= 0',  # 0 = all devices.
    'train.total_agent_steps': 'int >= 0',
    'train.steps_per_iteration': 'int >= 1',
    'train.log_every': 'int >= 1',  # Iteration counts divide by these two.
    'train.checkpoint_every': 'int >= 1',
    'train.eval_every': 'int >= 0',  # 0 = never.
    'train.video_every': 'int >= 0',
    'train.eval_top_k': 'int >= 0',  # 0 = the whole distribution, 1 = greedy.
    'train.val_rollouts': 'int >= 1',
    'train.best_max_min_ade': 'float >= 0',
    'train.val_batch_size': 'int >= 1',
    'train.init_policy': ('random', 'bc'),
    'train.max_iterations': 'int >= 0',
    'train.time_budget_s': 'float >= 0',
}


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  parts = [p for p in arg.split(',') if p and p != 'default']
  variants = [p for p in parts if p in VARIANTS]
  unknown = [p for p in parts if p not in VARIANTS + ('tiny', 'cpu')]
  if unknown or len(variants) > 1:
    raise ValueError(f'unknown or conflicting spacer config variant {arg!r}; use one of '
                     f'{VARIANTS} optionally with "tiny" or "cpu", e.g. "tiny,ppo".')
  c = ml_collections.ConfigDict()
  c.variant = variants[0] if variants else 'spacer'
  c.seed = 0

  # Scenarios: generated by the embedded generator unless data.files is set.
  c.data = ml_collections.ConfigDict()
  c.data.files = ''  # Glob of WOMD tf.Example TFRecords; '' = synthetic generator.
  c.data.format = 'tf_example'  # tf_example | scenario
  c.data.eval_files = ''  # Held-out records; '' = the records after the train ones.
  c.data.num_train_scenarios = 10000  # Distinct training scenes (paper: 10k).
  c.data.pool_size = 300  # Scenes kept on device; refreshed from the stream.
  c.data.refresh_every = 50  # Train iterations between pool refreshes.
  c.data.num_objects = 64  # Up to 64 controlled agents per world.
  c.data.num_roadgraph_points = 20000
  c.data.eval_seed_offset = 10_000_000  # Held-out generator seeds start here.
  c.data.num_eval_scenarios = 64

  c.tokens = ml_collections.ConfigDict()
  c.tokens.vocabulary = ''  # Path of a vocabulary artifact; '' = the default one.
  c.tokens.num_tokens = 200
  c.tokens.steps_per_token = 2  # 0.2 s tokens: the policy acts at 5 Hz.

  c.reference = ml_collections.ConfigDict()
  c.reference.checkpoint = ''  # '' = the default reference (trained when missing).
  c.reference.size = 'base'

  c.env = ml_collections.ConfigDict()
  c.env.num_worlds = 300  # Worlds simulated in parallel per train step.
  c.env.policy_steps = 40  # 8 s at 5 Hz per episode, starting at 1.0 s.

  # Every ObservationConfig field, its defaults from the dataclass (one source), so any
  # can be set from the command line; the factory builds ObservationConfig(**c.obs).
  c.obs = ml_collections.ConfigDict(dataclasses.asdict(ObservationConfig()))
  c.obs.goal_dropout = 0.5  # Train with and without goal conditioning.
  # Acceleration and yaw rate over the last 0.2 s token: without them the policy cannot
  # tell a turn or a braking manoeuvre in progress, and its KL to the reference (which
  # reads the token history) stays high.
  c.obs.motion_lag_steps = 2
  # Speeds are mean speeds over the last token (0.2 s), from positions: the last
  # sub-step's velocity differs between a token's two sub-steps by about 1 m/s, so after
  # the log's history the inputs came from another distribution (spacer.observation).
  c.obs.token_speed_steps = 2
  # A quarter of the road points are the nearest road edges, which lanes and lines
  # otherwise crowd out (benchmarks/road_coverage.py).
  c.obs.num_edge_points = 50
  # Tokens limited to physically possible speed changes (tokens.feasibility), the bound
  # every decoding of the reference uses: in acting, PPO ratios, entropy and the KL.
  c.obs.feasible_actions = True

  c.policy = ml_collections.ConfigDict()
  # A registered network (spacer_jax.spacer.policy.register_policy_network); the other
  # fields of this block are its constructor's.
  c.policy.network = 'late_fusion'
  c.policy.width = 64
  c.policy.hidden = 128
  c.policy.head_width = 32
  # One hidden layer for all types (a per-type bias tells it the type), and a shared
  # linear bottleneck of head_rank dims before each type's K logits (0 = none):
  # spacer.policy.LateFusionPolicy.
  c.policy.head_shared = False
  c.policy.head_shared_output = False  # One K-logit layer for all types.
  c.policy.head_rank = 0

  c.reward = ml_collections.ConfigDict()
  c.reward.goal_weight = 1.0
  c.reward.collision_weight = 0.75
  c.reward.offroad_weight = 0.75
  c.reward.goal_radius = 2.0
  # WOSAC episodes: every object valid at the current step acts for the whole episode,
  # each event counted once (spacer.rewards). 'remove' / 'freeze' take agents out
  # after an event, which evaluation never does (docs/experiments.md).
  c.reward.after_goal = 'continue'  # continue | remove | freeze
  c.reward.after_collision = 'continue'
  c.reward.after_offroad = 'continue'
  # No off-road penalty for agents whose log is off road (sidewalk pedestrians): WOSAC
  # scores the likelihood of the logged off-road flag.
  c.reward.exempt_log_offroad = True
  # A collision or off-road event forfeits the goal (agents keep acting): otherwise a
  # collision (-0.75) on the way to the goal (+1) pays.
  c.reward.goal_after_infraction = False
  # Dense goal progress (spacer.rewards.progress_reward): the share of the way to the
  # goal covered, so that standing still forfeits something. 0 = the paper's sparse
  # rewards only.
  c.reward.progress_weight = 0.0
  c.reward.progress_min_distance = 10.0

  c.loss = ml_collections.ConfigDict()
  c.loss.clip_eps = 0.2
  c.loss.value_coef = 0.3
  c.loss.entropy_coef = 1e-4
  c.loss.normalize_advantages = True

  c.ppo = ml_collections.ConfigDict()
  c.ppo.lr = 3e-4
  c.ppo.adam_eps = 1e-5
  c.ppo.gamma = 0.99
  c.ppo.gae_lambda = 0.95
  c.ppo.epochs = 4
  c.ppo.num_minibatches = 16  # batch / minibatch (paper: 131072 / 8192).
  c.ppo.max_grad_norm = 0.5
  # Valid agent-steps per gradient chunk, a speed setting: 0 = by backend (32 on CPU).
  c.ppo.chunk_rows = 0
  # Train steps that fit the value alone before the policy moves (from a BC start the
  # critic is untrained; 0 = none).
  c.ppo.critic_warmup_steps = 0

  c.hr_ppo = ml_collections.ConfigDict()
  c.hr_ppo.bc_checkpoint = ''  # '' = train the BC policy first (see bc section).

  # What the policy is anchored to is the variant's (spacer.train.Anchor: the reference
  # for spacer, the BC policy for hr_ppo, nothing for ppo); how strongly, here, once.
  c.anchor = ml_collections.ConfigDict()
  c.anchor.likelihood_weight = 0.001  # alpha of the reward (0 .. 0.01 work; 0.1 collapses).
  c.anchor.kl_coef = 0.1  # beta of KL(pi || p_ref); for hr_ppo lambda of KL(pi_BC || pi).
  # The reference anchor is softmax(log p_ref / T): T < 1 sharpens one broader than the
  # data; 1 = the model as trained.
  c.anchor.temperature = 1.0
  # beta starts at kl_warmup_factor x kl_coef and moves linearly to kl_coef over
  # kl_warmup_steps train steps (spacer.train.AnchorWeights; traced, no recompile).
  c.anchor.kl_warmup_factor = 1.0
  c.anchor.kl_warmup_steps = 0

  c.bc = ml_collections.ConfigDict()
  c.bc.steps = 2000
  c.bc.batch_worlds = 32
  c.bc.lr = 1e-3
  c.bc.lr_schedule = 'constant'  # constant | cosine (to 0 over bc.steps)
  # Training pools the BC policy learns from (pool_size scenes each, the first ones of
  # the training set), goals hidden with obs.goal_dropout as in PPO.
  c.bc.num_pools = 8

  # Data parallelism (spacer_jax.parallel): worlds sharded over a 'data' mesh; the
  # multi-process switch is the binary's --distributed flag (launch/ scripts set it).
  c.mesh = ml_collections.ConfigDict()
  c.mesh.num_devices = 0  # Devices of the mesh; 0 = all. Must divide worlds and pool.

  c.train = ml_collections.ConfigDict()
  c.train.total_agent_steps = 1_000_000_000
  c.train.steps_per_iteration = 5  # Compiled train steps between host logs.
  c.train.log_every = 1  # Iterations.
  c.train.eval_every = 50  # 0 = never.
  c.train.checkpoint_every = 20
  c.train.video_every = 200  # 0 = never.
  # In-training evaluation decodes as experiments.evaluate does (top-5, the paper's
  # setting; 0 = the whole distribution as in the PPO rollouts, 1 = greedy).
  c.train.eval_top_k = 5
  # Validation is WOSAC (eval.policy_realism, experiments.evaluate's scoring): at every
  # eval, val_rollouts closed-loop rollouts of each held-out scene, every object valid at
  # the current step simulated; the run keeps its best-meta state in workdir/best.
  c.train.val_rollouts = 32  # WOSAC's R.
  c.train.val_batch_size = 4  # Scenes per compiled rollout call.
  # Freeze guard: a state whose validation minADE exceeds this (m) is never the best
  # one. WOSAC meta on generated scenes rewards a policy in which everyone stops
  # (plain PPO froze at meta 0.767 > the reference's 0.69, minADE 29.7-32.3 m); every
  # moving policy measured so far had 9.4-17.9 m, the reference 2.3-3.6 m. 0 = off.
  c.train.best_max_min_ade = 25.0
  # Initial policy weights: 'random', or 'bc' = behaviour-cloned on the logs first (the
  # bc block; shared with hr_ppo's anchor), so self-play starts from a policy that
  # continues logged motion instead of a near-uniform one.
  c.train.init_policy = 'random'
  c.train.max_iterations = 0  # 0 = until total_agent_steps.
  c.train.time_budget_s = 0.0  # Stop (evaluate, checkpoint) after this long; 0 = none.

  if c.variant == 'ppo':
    c.anchor.likelihood_weight = 0.0
    c.anchor.kl_coef = 0.0
  elif c.variant == 'hr_ppo':
    c.anchor.likelihood_weight = 0.0
    c.anchor.kl_coef = 0.05  # HR-PPO: 0.02 .. 0.08.

  if 'cpu' in parts:
    # The default reference (models.default) is trained on 32-slot scenes too.
    c.data.num_train_scenarios = 512
    c.data.pool_size = 16
    c.data.refresh_every = 4
    c.data.num_objects = 32
    c.data.num_roadgraph_points = 6000
    c.data.num_eval_scenarios = 16
    c.env.num_worlds = 16
    c.obs.max_partners = 31
    c.obs.num_road_points = 64
    c.obs.num_edge_points = 16
    # The whole cpu map (at most about 1,600 points at 2 m): with 512 the observation
    # missed a road edge within 8 m at 11.8% of logged vehicle positions.
    c.obs.max_prepared_points = 2048
    c.ppo.epochs = 2
    c.ppo.num_minibatches = 4
    c.ppo.lr = 1e-3
    # From the BC start, 2 iterations of critic-only updates: without them validation
    # meta fell 0.663 -> 0.427 in 10 iterations, with them 0.663 -> 0.655
    # (docs/experiments.md).
    c.ppo.critic_warmup_steps = 10
    # One actor head for all types, 96 wide, with one 96 x K output layer (the type
    # enters through per-type biases; 72.9k parameters, 43x fewer than a base
    # reference). The paper's three 32-wide heads clone the log at 2.82 nats with a
    # slow mode and every self-play run from them slowed down (minADE 11-28 m); this
    # head clones at 2.54 (three 128-wide heads: 2.48 at 167k parameters) and does not
    # (benchmarks/bc_fit.py, docs/experiments.md).
    c.policy.head_width = 96
    c.policy.head_shared = True
    c.policy.head_shared_output = True
    if c.variant == 'spacer':
      # beta 0.5: against 0.1 from the same start, best validation meta 0.708 vs
      # 0.678, collision 0.12 vs 0.18 (docs/experiments.md).
      c.anchor.kl_coef = 0.5
    c.bc.steps = 400
    c.bc.batch_worlds = 4  # About 1 s a step on 2 cores (16 worlds: about 5 s).
    c.train.total_agent_steps = 0
    c.train.max_iterations = 40  # ~200 train steps.
    c.train.time_budget_s = 40 * 60.0
    c.train.eval_every = 10
    c.train.val_rollouts = 8  # evaluate.py:cpu's.
    c.train.checkpoint_every = 5
    c.train.video_every = 40
    # From random weights 40 CPU minutes end with every agent on one slow token
    # (docs/results.md): start from the BC policy, for all variants alike.
    c.train.init_policy = 'bc'
  if 'tiny' in parts:
    c.data.num_train_scenarios = 8
    c.data.pool_size = 8
    c.data.num_objects = 16
    c.data.num_roadgraph_points = 4000
    c.data.num_eval_scenarios = 4
    c.tokens.num_tokens = 32
    c.reference.size = 'tiny'
    c.env.num_worlds = 4
    c.env.policy_steps = 10
    c.obs.max_partners = 15
    c.obs.num_road_points = 32
    c.obs.num_edge_points = 8
    c.obs.max_prepared_points = 256
    c.policy.width = 32
    c.policy.hidden = 64
    c.policy.head_width = 16
    c.ppo.epochs = 2
    c.ppo.num_minibatches = 2
    c.bc.steps = 20
    c.bc.num_pools = 1
    c.bc.batch_worlds = 4
    c.train.total_agent_steps = 10 * 4 * 16 * 6
    c.train.steps_per_iteration = 2
    c.train.eval_every = 2
    c.train.val_rollouts = 2
    c.train.val_batch_size = 2
    c.train.checkpoint_every = 2
    c.train.video_every = 0
  return c
