"""WOSAC realism of one sim-agent policy on a set of scenes: the one scoring path.

``experiments.evaluate`` (its realism table) and ``train_spacer``'s in-training
validation both call :func:`score_policy`, so a validation figure is the evaluation
figure of the same policy, scenes and rollout keys: R closed-loop rollouts of every
scene (every object valid at the current step simulated for ``num_steps`` decisions),
scored by :mod:`spacer_jax.eval.realism` under each requested WOSAC config and
averaged over scenes by ``realism.aggregate``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh

from spacer_jax.eval import realism as realism_lib
from spacer_jax.eval.sim_agents import SimAgentPolicy, realism_rollouts
from spacer_jax.sim.datatypes import INIT_STEPS, SimulatorState
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.tokens.vocabulary import TokenVocabulary


def take_scenes(state: SimulatorState, rows: slice | np.ndarray) -> SimulatorState:
  """Scenes ``rows`` of a batched state ``(B, ...)``."""
  return jax.tree_util.tree_map(lambda a: a[rows], state)


def cut_to_horizon(log_state: SimulatorState, rollouts: Any, num_timesteps: int):
  """Cuts the log and the rollouts to the simulated horizon: with fewer decision steps
  than the log has future (short test runs), the unsimulated steps are not scored."""
  if num_timesteps >= log_state.log_trajectory.num_timesteps:
    return log_state, rollouts
  cut = lambda tree, n: jax.tree_util.tree_map(lambda a: a[..., :n], tree)
  log_state = log_state.replace(
      log_trajectory=cut(log_state.log_trajectory, num_timesteps),
      log_traffic_light=cut(log_state.log_traffic_light, num_timesteps))
  return log_state, cut(rollouts, num_timesteps - INIT_STEPS)


def score_policy(policy: SimAgentPolicy, params: Any, scenes: SimulatorState,
                 rng: jax.Array, *, env: MultiAgentEnvironment, vocab: TokenVocabulary,
                 num_rollouts: int, num_steps: int, batch_size: int,
                 configs: Sequence[str] = ('2025',),
                 jit_options: Optional[dict] = None, mesh: Optional[Mesh] = None,
                 on_first_batch: Optional[Callable[[realism_lib.WosacFeatures], None]] = None
                 ) -> dict[str, realism_lib.RealismResult]:
  """WOSAC realism of ``policy`` on ``scenes`` ``(B, ...)``, per config, scene means.

  Args:
    policy, params: the sim agents and their parameters.
    scenes: logged scenarios, batched ``(B,)``.
    rng: batch ``b`` rolls out with ``fold_in(rng, b)`` (split into ``num_rollouts``).
    env, vocab, num_steps: the closed-loop runner's (``eval.sim_agents``).
    num_rollouts: R per scene (32 in WOSAC).
    batch_size: scenes per compiled call; the last batch is padded with its first scene
      (one compiled shape), the padding is not scored.
    configs: WOSAC config names (``'2025'``, ``'2024'``); one feature pass serves all.
    jit_options, mesh: as for ``realism_rollouts`` (the mesh splits the rollouts).
    on_first_batch: called with the first batch's features (report histograms).

  Returns:
    ``{config name: RealismResult}`` of scalars (``realism.aggregate`` over scenes).
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}.')
  horizon = env.config.init_steps + num_steps * vocab.steps_per_token
  results: dict[str, list] = {name: [] for name in configs}
  n = scenes.shape[0]
  for b, start in enumerate(range(0, n, batch_size)):
    stop = min(start + batch_size, n)
    rows = np.arange(start, start + batch_size)
    batch = take_scenes(scenes, np.where(rows < stop, rows, start))
    rollouts = realism_rollouts(policy, params, batch, jax.random.fold_in(rng, b),
                                num_rollouts, env=env, vocab=vocab, num_steps=num_steps,
                                jit_options=jit_options, mesh=mesh)
    log_state, rollouts = cut_to_horizon(batch, rollouts, horizon)
    features = realism_lib.compute_features(log_state, rollouts)
    for name in results:
      scored = realism_lib.score_features(features, name)
      results[name].append(jax.tree_util.tree_map(
          lambda a, k=stop - start: np.asarray(a)[:k], scored))
    if on_first_batch is not None and b == 0:
      on_first_batch(features)
  return {name: realism_lib.aggregate(parts) for name, parts in results.items()}


# What the trainers log from a realism result, and what their progress lines call it.
VALIDATION_FIELDS = {
    'meta_metric': 'meta',
    'min_ade': 'min_ade',
    'collision_rate': 'collision',
    'offroad_rate_excl_log_offroad': 'offroad_excl_log',
    'linear_speed': 'linear_speed_likelihood',
    'kinematic': 'kinematic',
    'interactive': 'interactive',
    'map_based': 'map_based',
}


def validation_metrics(result: realism_lib.RealismResult) -> dict[str, float]:
  """The fields of :data:`VALIDATION_FIELDS` of one aggregated result, as floats."""
  return {short: float(getattr(result, name)) for name, short in VALIDATION_FIELDS.items()}


__all__ = ['VALIDATION_FIELDS', 'cut_to_horizon', 'score_policy', 'take_scenes',
           'validation_metrics']
