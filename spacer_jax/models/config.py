"""Sizes and settings of the reference transformer (``ReferenceConfig``).

The paper's reference model has about 3.2M parameters: hidden 128, "4 heads of 8", 2 map
layers, 4 agent layers and a 200-way token head. With hidden 128 we use 4 heads of
dimension 32 (the number of heads does not change the parameter count, only how the
hidden width is split), which puts ``base`` at 3.14M parameters. ``nano`` (0.32M) and
``mini`` (0.86M) stand for the paper's smaller studied sizes (about 0.3M and 1M).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

# Roadgraph type ids run from -1 (unknown) to 19 (speed bump); the map type embedding
# is indexed by ``type + 1``.
NUM_MAP_TYPES = 21


@dataclasses.dataclass(frozen=True)
class ReferenceConfig:
  """Static settings of :class:`spacer_jax.models.reference.ReferenceModel`.

  Attributes:
    hidden: width of every token embedding.
    num_heads: attention heads; ``hidden`` must be divisible by it.
    map_layers: map self-attention layers.
    agent_layers: agent layers, each temporal + agent->map + agent->agent attention.
    num_tokens: motion tokens per agent type (K), the size of each head's output.
    num_agent_types: vocabularies / heads (vehicle, pedestrian, cyclist).
    num_map_segments: M, the static number of map segments kept per scenario.
    segment_step: roadgraph points between a segment's first and last point; at
      WOMD's 0.5 m spacing 10 points make 5 m segments.
    k_map_self: neighbouring segments each segment attends to in the map encoder.
    k_map: nearest map segments each agent position attends to.
    k_agent: nearest other agents each agent attends to at the same position.
    temporal_window: positions (itself included) an agent position attends to in its
      own history; ``None`` means the whole history.
    ff_multiplier: feed-forward width as a multiple of ``hidden``.
    dropout: dropout rate, used only when the model runs non-deterministically.
    position_scale: metres that relative positions and lengths are divided by.
    rel_dim: width of the relative pose embeddings shared by all layers (one per
      key-query pair, so it sets most of the pass's memory traffic).
    agent_motion_features: the agent->agent keys also carry how the other agent moves
      relative to the query over the last token (relative displacement, closing speed,
      inverse time to contact: ``features.relative_motion_features``). False in models
      trained before it existed.
    history_dropout: in training passes (``deterministic=False``), the probability that
      an agent position sees none of its own earlier positions (only its current token
      and the scene), so that it cannot just continue the motion it is in (the
      "copycat" shortcut of imitation) and must read braking from the car ahead. 0 =
      off; never used in evaluation or decoding.
  """

  hidden: int = 128
  num_heads: int = 4
  map_layers: int = 2
  agent_layers: int = 4
  num_tokens: int = 200
  num_agent_types: int = 3
  num_map_segments: int = 256
  segment_step: int = 10
  k_map_self: int = 16
  k_map: int = 32
  k_agent: int = 16
  temporal_window: Optional[int] = 16
  ff_multiplier: int = 4
  dropout: float = 0.1
  position_scale: float = 20.0
  rel_dim: int = 32
  agent_motion_features: bool = False
  history_dropout: float = 0.0

  def __post_init__(self):
    positive = ('hidden', 'num_heads', 'agent_layers', 'num_tokens', 'num_agent_types',
                'num_map_segments', 'segment_step', 'k_map_self', 'k_map', 'k_agent',
                'ff_multiplier', 'rel_dim')
    for name in positive:
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f'ReferenceConfig.{name} must be a positive int, got {value!r}')
    if not isinstance(self.map_layers, int) or self.map_layers < 0:
      raise ValueError(f'ReferenceConfig.map_layers must be an int >= 0, got '
                       f'{self.map_layers!r}')
    if self.hidden % self.num_heads:
      raise ValueError(f'ReferenceConfig.hidden ({self.hidden}) must be divisible by '
                       f'num_heads ({self.num_heads})')
    if self.temporal_window is not None and (
        not isinstance(self.temporal_window, int) or self.temporal_window < 1):
      raise ValueError(f'ReferenceConfig.temporal_window must be None or a positive int, '
                       f'got {self.temporal_window!r}')
    if not 0.0 <= self.history_dropout < 1.0:
      raise ValueError(f'ReferenceConfig.history_dropout must be in [0, 1), got '
                       f'{self.history_dropout}')
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f'ReferenceConfig.dropout must be in [0, 1), got {self.dropout}')
    if self.position_scale <= 0:
      raise ValueError(f'ReferenceConfig.position_scale must be > 0, got '
                       f'{self.position_scale}')

  @property
  def head_dim(self) -> int:
    return self.hidden // self.num_heads


# Sizes studied in the paper. Parameter counts (``api.parameter_counts()``): nano 320,760,
# mini 862,840, base 3,141,240.
_SIZES: dict[str, dict[str, Any]] = {
    'nano': dict(hidden=64, num_heads=4, map_layers=1, agent_layers=1),
    'mini': dict(hidden=64, num_heads=4, map_layers=2, agent_layers=4),
    'base': dict(hidden=128, num_heads=4, map_layers=2, agent_layers=4),
}

SIZES = tuple(_SIZES)


def reference_config(size: str = 'base', **overrides: Any) -> ReferenceConfig:
  """The config of a named size (``nano``, ``mini``, ``base``), with field overrides."""
  if size not in _SIZES:
    raise ValueError(f'unknown reference model size {size!r}; expected one of {SIZES}')
  return ReferenceConfig(**{**_SIZES[size], **overrides})
