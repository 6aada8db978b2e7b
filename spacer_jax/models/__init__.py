"""The tokenized reference transformer ``p_ref`` (SMART-style) and its query API."""

from spacer_jax.models.api import (
    DecodeState,
    ReferenceInputs,
    as_model,
    build_reference_inputs,
    count_params,
    decode_step,
    init_decode,
    init_reference,
    map_anchors,
    next_token_log_probs_incremental,
    parameter_counts,
    reference_log_probs,
    scene_center,
)
from spacer_jax.models.config import SIZES, ReferenceConfig, reference_config
from spacer_jax.models.features import MapSegments, map_segments, relative_pose_features
from spacer_jax.models.losses import behaviour_cloning_loss, next_token_loss
from spacer_jax.models.reference import DecodeCache, ReferenceModel, position_valid

__all__ = [
    'SIZES',
    'DecodeCache',
    'DecodeState',
    'MapSegments',
    'ReferenceConfig',
    'ReferenceInputs',
    'ReferenceModel',
    'as_model',
    'behaviour_cloning_loss',
    'build_reference_inputs',
    'count_params',
    'decode_step',
    'init_decode',
    'init_reference',
    'map_anchors',
    'map_segments',
    'next_token_log_probs_incremental',
    'next_token_loss',
    'parameter_counts',
    'position_valid',
    'reference_config',
    'reference_log_probs',
    'relative_pose_features',
    'scene_center',
]
