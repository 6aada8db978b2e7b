"""The simulator demo job: generate scenarios, roll out sim agents, measure, render."""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from spacer_jax.data import generator
from spacer_jax.sim import agents, builders, dynamics
from spacer_jax.sim.config import EnvConfig
from spacer_jax.sim.datatypes import ObjectType
from spacer_jax.sim.env import MultiAgentEnvironment
from spacer_jax.sim.rollout import rollout
from spacer_jax.viz import render


def run_demo(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the demo described by ``config`` and writes its outputs into ``workdir``.

  Returns:
    The summary written to ``workdir/summary.json``.
  """
  os.makedirs(workdir, exist_ok=True)
  gen_config = generator.GeneratorConfig(num_objects=config.num_objects,
                                         num_roadgraph_points=config.num_roadgraph_points)
  t0 = time.perf_counter()
  scenarios = [generator.generate_scenario(config.seed + i, gen_config)
               for i in range(config.num_scenarios)]
  gen_seconds = time.perf_counter() - t0
  batch = builders.stack_states(scenarios)

  env = MultiAgentEnvironment(
      dynamics.get_dynamics_model('state'),
      EnvConfig(controlled_object=config.controlled_object,
                metrics=('overlap', 'offroad', 'log_divergence')))
  agent = agents.get_sim_agent(config.sim_agent)

  @jax.jit
  def simulate(state, rng):
    state = jax.vmap(env.reset)(state)
    return jax.vmap(lambda s: rollout(env, s, agent.select_update, rng))(state)

  rng = jax.random.PRNGKey(config.seed)
  t0 = time.perf_counter()
  out = jax.block_until_ready(simulate(batch, rng))
  first_call = time.perf_counter() - t0
  t0 = time.perf_counter()
  out = jax.block_until_ready(simulate(batch, rng))
  run_seconds = time.perf_counter() - t0

  meta = out.final_state.object_metadata
  controlled = np.asarray(meta.is_controlled)  # (B, N)
  # Pedestrians walk on sidewalks, outside the road edges: off-road counts vehicles.
  vehicles = controlled & (np.asarray(meta.object_types) == ObjectType.VEHICLE)
  def any_rate(name, mask):
    m = out.metrics[name]  # (B, T, N) after vmap
    flagged = np.asarray(jnp.any((m.value > 0) & m.valid, axis=1))
    return float(flagged[mask].mean()) if mask.any() else 0.0
  div = out.metrics['log_divergence']
  ade = float(jnp.sum(div.value * div.valid) / jnp.maximum(jnp.sum(div.valid), 1))
  steps = out.reward.shape[1]
  summary = {
      'sim_agent': config.sim_agent,
      'num_scenarios': config.num_scenarios,
      'controlled_agents': int(controlled.sum()),
      'collision_rate': any_rate('overlap', controlled),
      'offroad_rate': any_rate('offroad', vehicles),  # vehicles only
      'mean_log_divergence_m': ade,
      'generation_seconds': gen_seconds,
      'compile_and_run_seconds': first_call,
      'rollout_seconds': run_seconds,
      'scenario_steps_per_s': config.num_scenarios * steps / run_seconds,
  }
  videos = []
  for i in range(min(config.num_render, config.num_scenarios)):
    one = jax.tree_util.tree_map(lambda x, i=i: x[i], out.final_state)
    render.save_png(one, os.path.join(workdir, f'scenario_{i}.png'),
                    t=int(one.timestep), view_radius=config.view_radius)
    videos.append(render.save_video(one, os.path.join(workdir, f'scenario_{i}.mp4'),
                                    start=env.config.init_steps - 1,
                                    view_radius=config.view_radius))
  summary['videos'] = videos
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  print(f"sim agent {config.sim_agent}: {summary['controlled_agents']} agents in "
        f"{config.num_scenarios} scenarios | collision {summary['collision_rate']:.3f} | "
        f"off-road (vehicles) {summary['offroad_rate']:.3f} | log divergence {ade:.2f} m | "
        f"{summary['scenario_steps_per_s']:.0f} scenario-steps/s")
  print(f'outputs in {workdir}: ' + ', '.join(os.path.basename(v) for v in videos))
  return summary
