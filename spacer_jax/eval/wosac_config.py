"""The official WOSAC metric configurations (2024 and 2025 sim-agents challenges).

Figures are those of the public ``challenge_2024_config`` / ``challenge_2025_sim_agents
_config`` text protos (``shared/specs/wosac.md``): per feature the estimator, histogram
range and bins, additive smoothing pseudocount, meta-metric weight and bucket. Every
time-series feature pools the 32 rollouts x 80 steps of one agent into one histogram
(``independent_timesteps: true``); Bernoulli features use a 2-bin histogram of the
per-agent "any event" flag with the proto default pseudocount 0.001.

The two versions differ only in weights (distance_to_road_edge 0.10 -> 0.05,
traffic_light_violation 0 -> 0.05) and in time-to-collision being scored for vehicles
only in 2025. Never compare scores across versions.
"""

from __future__ import annotations

import dataclasses

KINEMATIC, INTERACTIVE, MAP_BASED = 'kinematic', 'interactive', 'map_based'
BUCKETS = (KINEMATIC, INTERACTIVE, MAP_BASED)
HISTOGRAM, BERNOULLI = 'histogram', 'bernoulli'

# The ten features in the evaluator's order (also the order of the meta-metric sum).
FEATURE_NAMES = (
    'linear_speed', 'linear_acceleration', 'angular_speed', 'angular_acceleration',
    'distance_to_nearest_object', 'collision_indication', 'time_to_collision',
    'distance_to_road_edge', 'offroad_indication', 'traffic_light_violation',
)


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
  """How one feature is scored.

  Attributes:
    name: one of :data:`FEATURE_NAMES`.
    estimator: ``'histogram'`` (time series, pooled over rollouts and steps) or
      ``'bernoulli'`` (per-agent flag).
    bucket: ``'kinematic'``, ``'interactive'`` or ``'map_based'``.
    weight: meta-metric weight.
    min_val, max_val: histogram range (values outside are clipped into the end bins).
    num_bins: histogram bins (2 for Bernoulli: [-0.5, 0.5), [0.5, 1.5]).
    pseudocount: additive smoothing added to every bin count.
  """

  name: str
  estimator: str
  bucket: str
  weight: float
  min_val: float = -0.5
  max_val: float = 1.5
  num_bins: int = 2
  pseudocount: float = 0.001

  def __post_init__(self):
    if self.name not in FEATURE_NAMES:
      raise ValueError(f'FeatureConfig.name={self.name!r}, expected one of {FEATURE_NAMES}.')
    if self.estimator not in (HISTOGRAM, BERNOULLI):
      raise ValueError(f'FeatureConfig.estimator={self.estimator!r} for {self.name}, '
                       f"expected '{HISTOGRAM}' or '{BERNOULLI}'.")
    if self.bucket not in BUCKETS:
      raise ValueError(f'FeatureConfig.bucket={self.bucket!r} for {self.name}, '
                       f'expected one of {BUCKETS}.')
    if not self.max_val > self.min_val or self.num_bins < 1:
      raise ValueError(f'FeatureConfig for {self.name} needs max_val > min_val and '
                       f'num_bins >= 1, got [{self.min_val}, {self.max_val}], '
                       f'{self.num_bins} bins.')
    if self.pseudocount <= 0 or self.weight < 0:
      raise ValueError(f'FeatureConfig for {self.name} needs pseudocount > 0 and '
                       f'weight >= 0, got {self.pseudocount}, {self.weight}.')


@dataclasses.dataclass(frozen=True)
class WosacConfig:
  """A full metric configuration.

  Attributes:
    version: a label ('2024', '2025').
    features: one :class:`FeatureConfig` per name of :data:`FEATURE_NAMES`, in order.
    ttc_vehicles_only: score time-to-collision only on vehicles (2025).
  """

  version: str
  features: tuple[FeatureConfig, ...]
  ttc_vehicles_only: bool

  def __post_init__(self):
    names = tuple(f.name for f in self.features)
    if names != FEATURE_NAMES:
      raise ValueError(f'WosacConfig.features must list {FEATURE_NAMES} in order, got '
                       f'{names}.')

  def feature(self, name: str) -> FeatureConfig:
    """The config of feature ``name``."""
    return self.features[FEATURE_NAMES.index(name)]

  def bucket_weights(self, bucket: str) -> dict[str, float]:
    """``{feature: weight}`` of the features in ``bucket``."""
    return {f.name: f.weight for f in self.features if f.bucket == bucket}


def _histogram(name, bucket, weight, lo, hi, bins):
  return FeatureConfig(name, HISTOGRAM, bucket, weight, lo, hi, bins, 0.1)


def _bernoulli(name, bucket, weight):
  return FeatureConfig(name, BERNOULLI, bucket, weight)


def _make(version: str, road_edge_weight: float, traffic_light_weight: float,
          ttc_vehicles_only: bool) -> WosacConfig:
  return WosacConfig(version=version, ttc_vehicles_only=ttc_vehicles_only, features=(
      _histogram('linear_speed', KINEMATIC, 0.05, 0.0, 25.0, 10),
      _histogram('linear_acceleration', KINEMATIC, 0.05, -12.0, 12.0, 11),
      _histogram('angular_speed', KINEMATIC, 0.05, -0.628, 0.628, 11),
      _histogram('angular_acceleration', KINEMATIC, 0.05, -3.14, 3.14, 11),
      _histogram('distance_to_nearest_object', INTERACTIVE, 0.10, -5.0, 40.0, 10),
      _bernoulli('collision_indication', INTERACTIVE, 0.25),
      _histogram('time_to_collision', INTERACTIVE, 0.10, 0.0, 5.0, 10),
      _histogram('distance_to_road_edge', MAP_BASED, road_edge_weight, -20.0, 40.0, 10),
      _bernoulli('offroad_indication', MAP_BASED, 0.25),
      _bernoulli('traffic_light_violation', MAP_BASED, traffic_light_weight),
  ))


CONFIG_2024 = _make('2024', road_edge_weight=0.10, traffic_light_weight=0.0,
                    ttc_vehicles_only=False)
CONFIG_2025 = _make('2025', road_edge_weight=0.05, traffic_light_weight=0.05,
                    ttc_vehicles_only=True)
_CONFIGS = {'2024': CONFIG_2024, '2025': CONFIG_2025}


def get_config(config: str | WosacConfig = '2025') -> WosacConfig:
  """``'2024'``, ``'2025'`` or a :class:`WosacConfig` (returned as is)."""
  if isinstance(config, WosacConfig):
    return config
  if config not in _CONFIGS:
    raise ValueError(f'Unknown WOSAC config {config!r}; expected one of '
                     f'{sorted(_CONFIGS)} or a WosacConfig.')
  return _CONFIGS[config]
