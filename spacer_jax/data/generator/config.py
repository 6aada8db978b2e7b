"""Configuration of the procedural scenario generator."""

from __future__ import annotations

from dataclasses import dataclass

from spacer_jax.sim.datatypes import (
    DEFAULT_NUM_OBJECTS,
    DEFAULT_NUM_ROADGRAPH_POINTS,
    NUM_TIMESTEPS,
)

# Version of what the generator makes: bump it whenever a change alters the scenarios
# generated for some (seed, config), so that caches derived from generated data (token
# vocabularies, reference models) never mix versions.
GENERATOR_VERSION = 'generator-v5'

# Every map family the generator knows, in the order used for ids and sampling.
ALL_FAMILIES = ('straight', 'curved', 'intersection', 't_junction', 'merge', 'roundabout')


@dataclass(frozen=True)
class GeneratorConfig:
  """What to generate and how noisy it is. All distances in metres, times in seconds.

  Attributes:
    num_objects: object slots of the state (padding beyond the real objects).
    num_roadgraph_points: roadgraph slots; maps that do not fit are cropped to what
      the logged objects reach, the points nearest their logged positions first
      (``crop.crop_polylines``), never raising.
    num_timesteps: log length at 10 Hz (WOMD: 91 = 11 history + 80 future).
    families: map families to sample from (subset of ``ALL_FAMILIES``).
    family_weights: relative sampling weights per entry of ``families`` (None:
      uniform).
    density: multiplier of traffic density (vehicles per lane-metre).
    pedestrians: add pedestrians on sidewalks and crosswalks.
    cyclists: add cyclists riding in the rightmost lanes.
    position_noise: std of the smooth (temporally correlated) position noise in m.
    heading_noise: std of the smooth heading noise in rad.
    collision_noise_rate: probability that a scenario contains exactly one logged
      collision: the closest near-miss between two vehicles becomes a brief box
      overlap through a smooth ~2 s tracking glitch of one of them (never the SDC),
      as found in real logs; 0 = never. The ``overlap`` metric flags that pair only.
    offroad_noise_rate: probability that a scenario contains exactly one vehicle
      parked along a straight road edge 8-45 m from the SDC with its kerb-side wheels
      over the kerb, still for the whole log; 0 = never. The ``offroad`` metric flags
      that car only. It takes a free object slot, else the last (farthest) one.
      Both noises draw from their own random stream, so the rest of the scenario is
      the same as without them; in about 1% of scenarios no qualifying pair / spot
      exists and the log stays clean.
    track_radius: an object is logged from the first step it is within this distance
      of the SDC to the end of the log (the SDC's perception acquiring it); the maps'
      roads run far enough that no logged object leaves them.
    parked_vehicles: park cars in the parking strips of surface streets near the SDC.
    parked_share: range of the per-scene share of the logged vehicles that are parked
      (drawn uniformly; scenes without parking strips, e.g. freeways, have none).
      Parked cars stand still, noise free, along the curb for the whole log.
    log_off_map: when ``num_roadgraph_points`` cannot hold the map around every logged
      object (long fast roads in 4000-6000 points), the map holds the surroundings of
      as many objects as fit (SDC first, then tracks to predict, then by closest
      approach); False (default) logs only those (a log and its map cover the same
      ground, the off-road metric stays right), True logs the others too, beyond the
      map (for uses that ignore the map, e.g. token vocabularies).
    incident_rate: probability that a scenario contains incidents: up to two moving
      vehicles brake hard (2.5-5.5 m/s^2) in the first 4.5 s of the log, half of them
      to a standstill for the rest of it (a stalled car), half to 20-60% of their speed
      for 3-6 s (a slow-down), and the traffic behind reacts; fast closing situations
      that settled traffic rarely shows. Draws from its own random stream; 0 (default)
      = never, which leaves every scenario as before.
    max_tracks_to_predict: at most this many objects get ``is_modeled``.
    warmup_seconds: traffic is simulated this long before the first logged step so
      the log starts from settled, human-looking traffic.
    map_spacing: roadgraph sample spacing in m (WOMD: ~0.5).
  """

  num_objects: int = DEFAULT_NUM_OBJECTS
  num_roadgraph_points: int = DEFAULT_NUM_ROADGRAPH_POINTS
  num_timesteps: int = NUM_TIMESTEPS
  families: tuple[str, ...] = ALL_FAMILIES
  family_weights: tuple[float, ...] | None = None
  density: float = 1.0
  pedestrians: bool = True
  cyclists: bool = True
  position_noise: float = 0.02
  heading_noise: float = 0.004
  collision_noise_rate: float = 0.0
  offroad_noise_rate: float = 0.0
  incident_rate: float = 0.0
  track_radius: float = 80.0
  parked_vehicles: bool = True
  parked_share: tuple[float, float] = (0.2, 0.45)
  log_off_map: bool = False
  max_tracks_to_predict: int = 8
  warmup_seconds: float = 3.0
  map_spacing: float = 0.5

  def __post_init__(self):
    if self.num_objects < 2:
      raise ValueError(f'num_objects must be >= 2, got {self.num_objects}.')
    if self.num_roadgraph_points < 1000:
      raise ValueError(
          f'num_roadgraph_points must be >= 1000, got {self.num_roadgraph_points}.')
    if self.num_timesteps < 2:
      raise ValueError(f'num_timesteps must be >= 2, got {self.num_timesteps}.')
    if not self.families:
      raise ValueError('families must name at least one map family.')
    unknown = [f for f in self.families if f not in ALL_FAMILIES]
    if unknown:
      raise ValueError(f'unknown map families {unknown}; choose from {ALL_FAMILIES}.')
    if self.family_weights is not None:
      if len(self.family_weights) != len(self.families):
        raise ValueError('family_weights must have one weight per family.')
      if min(self.family_weights) < 0 or sum(self.family_weights) <= 0:
        raise ValueError('family_weights must be non-negative with a positive sum.')
    if self.density <= 0:
      raise ValueError(f'density must be positive, got {self.density}.')
    for name in ('position_noise', 'heading_noise', 'collision_noise_rate',
                 'offroad_noise_rate', 'incident_rate', 'warmup_seconds'):
      if getattr(self, name) < 0:
        raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}.')
    for name in ('collision_noise_rate', 'offroad_noise_rate', 'incident_rate'):
      if getattr(self, name) > 1:
        raise ValueError(f'{name} is a probability, got {getattr(self, name)}.')
    if self.track_radius <= 0:
      raise ValueError(f'track_radius must be positive, got {self.track_radius}.')
    lo, hi = self.parked_share
    if not 0 <= lo <= hi < 1:
      raise ValueError(f'parked_share must be a range within [0, 1), got {self.parked_share}.')
    if self.max_tracks_to_predict < 0:
      raise ValueError('max_tracks_to_predict must be >= 0.')
    if self.map_spacing <= 0:
      raise ValueError('map_spacing must be positive.')
