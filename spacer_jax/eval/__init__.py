"""Evaluation: WOSAC realism metrics in JAX and WOSAC submission export.

- :mod:`realism`: ``compute_realism(log_state, rollouts, config)`` -> per-scenario
  likelihoods, bucket scores, meta-metric, minADE and event rates (or the two halves,
  ``compute_features`` then ``score_features``); ``aggregate`` over scenarios.
- :mod:`features` (kinematics, interactions), :mod:`road_edge`, :mod:`red_light`: the
  per-agent, per-step WOSAC features.
- :mod:`estimators`: histogram and Bernoulli log-likelihoods.
- :mod:`wosac_config`: the official 2024 and 2025 configurations.
- :mod:`submission`: ``SimAgentsChallengeSubmission`` protos (own wire-format codec).
"""

from spacer_jax.eval.realism import (
    RealismOptions,
    RealismResult,
    WosacFeatures,
    aggregate,
    compute_features,
    compute_realism,
    score_features,
)
from spacer_jax.eval.wosac_config import (
    CONFIG_2024,
    CONFIG_2025,
    FEATURE_NAMES,
    FeatureConfig,
    WosacConfig,
    get_config,
)

__all__ = [
    'CONFIG_2024', 'CONFIG_2025', 'FEATURE_NAMES', 'FeatureConfig', 'RealismOptions',
    'RealismResult', 'WosacConfig', 'WosacFeatures', 'aggregate', 'compute_features',
    'compute_realism', 'get_config', 'score_features',
]
