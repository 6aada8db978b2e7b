"""Environment configuration: which objects are controlled, what is measured and rewarded."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from spacer_jax.sim.metrics.road_edges import RESET_INDEX_CONFIG, RoadEdgeIndexConfig


class ControlledObjects(str, enum.Enum):
  """Which objects a policy controls after ``reset`` (the rest replay the log)."""

  SDC = 'sdc'  # The self-driving car only.
  MODELED = 'modeled'  # WOMD tracks_to_predict (is_modeled) plus the SDC.
  VALID = 'valid'  # Every object valid at the current step.


@dataclasses.dataclass(frozen=True)
class EnvConfig:
  """Static settings of :class:`spacer_jax.sim.env.MultiAgentEnvironment`.

  Attributes:
    init_steps: logged steps copied into the simulation at reset (11 in WOMD: 10 past
      + current); the episode then starts at ``timestep = init_steps - 1``.
    controlled_object: which objects the action controls (:class:`ControlledObjects`).
    metrics: names of registry metrics computed by ``env.metrics``.
    rewards: metric name -> weight; the per-object reward is the weighted sum of metric
      values, times the controlled mask. Every rewarded metric is also computed.
    use_fallback: an object with an invalid action keeps constant velocity instead of
      becoming invalid.
    build_road_edge_index: build the per-scenario road-edge index at reset so that
      off-road and road-edge distances are cheap per step (exact semantics either way).
    road_edge_index: the index's sizes: build cost at reset against query cost and the
      share of certified answers per step (docs/results.md has the measured trade-off).
  """

  init_steps: int = 11
  controlled_object: ControlledObjects = ControlledObjects.VALID
  metrics: tuple[str, ...] = ('overlap', 'offroad', 'log_divergence')
  rewards: Mapping[str, float] = dataclasses.field(
      default_factory=lambda: {'overlap': -1.0, 'offroad': -1.0})
  use_fallback: bool = False
  build_road_edge_index: bool = True
  road_edge_index: RoadEdgeIndexConfig = RESET_INDEX_CONFIG

  def __post_init__(self):
    if self.init_steps < 1:
      raise ValueError(f'EnvConfig.init_steps must be >= 1, got {self.init_steps}.')
    object.__setattr__(self, 'controlled_object', ControlledObjects(self.controlled_object))
    object.__setattr__(self, 'metrics', tuple(self.metrics))
    # A frozen, hashable copy: the config is a static argument of compiled functions.
    object.__setattr__(self, 'rewards', _FrozenDict(self.rewards))

  @property
  def metrics_to_compute(self) -> tuple[str, ...]:
    """``metrics`` plus every rewarded metric, each once, in a stable order."""
    names = list(self.metrics)
    names += [n for n in self.rewards if n not in names]
    return tuple(names)


class _FrozenDict(dict):
  """A hashable dict for frozen configs."""

  def __hash__(self):  # type: ignore[override]
    return hash(tuple(sorted(self.items())))

  def _immutable(self, *args, **kwargs):
    raise TypeError('EnvConfig.rewards is immutable; build a new EnvConfig.')

  __setitem__ = __delitem__ = update = pop = clear = setdefault = _immutable  # type: ignore
