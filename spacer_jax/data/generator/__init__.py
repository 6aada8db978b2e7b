"""Procedural WOMD-like scenario generator (host-side numpy, deterministic per seed).

Usage::

  from spacer_jax.data.generator import GeneratorConfig, generate_batch, generate_scenario
  state = generate_scenario(0, GeneratorConfig(num_objects=64))
  batch = generate_batch(range(16), GeneratorConfig(num_objects=64))  # (16, ...)

  for seed, state in generate_parallel(range(1000), num_workers=2):  # seed order
    ...

Modules, one job each: ``geometry`` (polylines), ``maps`` (map families), ``lanes``
(lane graph, routes and their pairwise relations), ``signals`` (phase plans),
``population`` (who is where), ``traffic`` (human-like behaviour), ``parking``
(parked cars along the curbs), ``safety`` (overlap and road-edge checks), ``noise``
(optional rare collision / off-road events), ``interest`` (``objects_of_interest``),
``crop`` (the roadgraph budget), ``assemble`` (rollout -> ``SimulatorState``),
``scenario`` (the pipeline), ``parallel`` (worker processes). ``GENERATOR_VERSION``
names what it generates.
Generation is numpy only; JAX arrays are made once, by the builders, at the end.
"""

from __future__ import annotations

from collections.abc import Iterable

from spacer_jax.data.generator.config import ALL_FAMILIES, GENERATOR_VERSION, GeneratorConfig
from spacer_jax.data.generator.parallel import generate_parallel
from spacer_jax.data.generator.scenario import generate_scenario
from spacer_jax.sim.builders import stack_states
from spacer_jax.sim.datatypes import SimulatorState


def generate_batch(seeds: Iterable[int], config: GeneratorConfig = GeneratorConfig()
                   ) -> SimulatorState:
  """Generates one scenario per seed and stacks them: every field gets a leading
  ``(len(seeds),)`` batch dimension."""
  return stack_states([generate_scenario(int(s), config) for s in seeds])


__all__ = ['ALL_FAMILIES', 'GENERATOR_VERSION', 'GeneratorConfig', 'generate_batch',
           'generate_parallel', 'generate_scenario']
