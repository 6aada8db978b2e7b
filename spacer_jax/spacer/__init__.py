"""SPACER building blocks: observation features, the late-fusion policy, rewards, GAE
and the PPO + KL(pi || p_ref) loss. All functions are pure, jittable and take leading
batch dims ``(...)`` (worlds, time)."""

from spacer_jax.spacer.gae import compute_gae
from spacer_jax.spacer.losses import (
    LossConfig,
    PPOBatch,
    categorical_kl,
    entropy,
    normalize_advantages,
    ppo_loss,
)
from spacer_jax.spacer.observation import (
    EGO_DIM,
    NUM_AGENT_TYPES,
    PARTNER_DIM,
    ROAD_DIM,
    ObservationConfig,
    PolicyObservation,
    RoadPointSet,
    agent_type_index,
    build_observation,
    goal_positions,
    prepare_road_points,
    sample_goal_visible,
)
from spacer_jax.spacer.policy import LateFusionPolicy, count_params, init_policy, policy_apply
from spacer_jax.spacer.rewards import (
    AgentStatus,
    RewardConfig,
    StepEvents,
    at_goal,
    event_flags,
    spacer_reward,
    step_reward,
    task_reward,
    update_status,
)

__all__ = [
    'EGO_DIM', 'NUM_AGENT_TYPES', 'PARTNER_DIM', 'ROAD_DIM', 'AgentStatus',
    'LateFusionPolicy', 'LossConfig', 'ObservationConfig', 'PPOBatch', 'PolicyObservation',
    'RewardConfig', 'RoadPointSet', 'StepEvents', 'agent_type_index', 'at_goal',
    'build_observation', 'categorical_kl', 'compute_gae', 'count_params', 'entropy',
    'event_flags', 'goal_positions', 'init_policy', 'normalize_advantages', 'policy_apply',
    'ppo_loss', 'prepare_road_points', 'sample_goal_visible', 'spacer_reward', 'step_reward',
    'task_reward', 'update_status',
]
