"""Metric registry: name -> function ``SimulatorState -> MetricResult``.

The environment, rollouts and evaluation name metrics by string; this is the one
place those names resolve. Custom metrics join with :func:`register_metric`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from spacer_jax.sim.datatypes import SimulatorState
from spacer_jax.sim.metrics import (
    interaction,
    kinematics,
    log_divergence,
    offroad,
    overlap,
    red_light,
    routes,
)
from spacer_jax.sim.metrics.base import MetricResult

MetricFn = Callable[[SimulatorState], MetricResult]

_REGISTRY: dict[str, MetricFn] = {
    'overlap': overlap.overlap,
    'offroad': offroad.offroad,
    'log_divergence': log_divergence.log_divergence,
    'kinematic_infeasibility': kinematics.kinematic_infeasibility,
    'distance_to_nearest_object': interaction.distance_to_nearest_object,
    'time_to_collision': interaction.time_to_collision,
    'distance_to_road_edge': offroad.distance_to_road_edge,
    'red_light_violation': red_light.red_light_violation,
    'wrong_way': routes.wrong_way,
    'progression': routes.progression,
    'off_route': routes.off_route,
}


def register_metric(name: str, fn: MetricFn, overwrite: bool = False) -> None:
  """Adds ``fn`` under ``name``; refuses to replace an existing one unless asked."""
  if not callable(fn):
    raise TypeError(f'register_metric({name!r}): {fn!r} is not callable.')
  if name in _REGISTRY and not overwrite and _REGISTRY[name] is not fn:
    raise ValueError(f'Metric {name!r} is already registered; pass overwrite=True to '
                     'replace it.')
  _REGISTRY[name] = fn


def get_metric(name: str) -> MetricFn:
  """The function registered as ``name``; ``KeyError`` listing the known names."""
  try:
    return _REGISTRY[name]
  except KeyError:
    raise KeyError(f'Unknown metric {name!r}; registered: {sorted(_REGISTRY)}.') from None


def registered_metrics() -> tuple[str, ...]:
  """Names of all registered metrics, sorted."""
  return tuple(sorted(_REGISTRY))


def run_metrics(state: SimulatorState, names: Sequence[str]) -> dict[str, MetricResult]:
  """Computes each named metric once (duplicates ignored), in the given order.

  Offroad and distance_to_road_edge share one road-edge query when both are asked.
  """
  out: dict[str, MetricResult] = {}
  fns = {n: get_metric(n) for n in names}
  shared = {'offroad': offroad.offroad, 'distance_to_road_edge': offroad.distance_to_road_edge}
  if sum(fns.get(n) is f for n, f in shared.items()) == 2:
    out.update(offroad.offroad_and_distance(state))
  for name, fn in fns.items():
    if name not in out:
      out[name] = fn(state)
  return {n: out[n] for n in fns}
