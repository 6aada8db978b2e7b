"""Config of the simulator demo: closed-loop sim agents on generated scenarios.

Run:
  python -m experiments.sim_demo --config=experiments/configs/sim_demo.py \
      --workdir=/tmp/spacer_demo
Variants: ``sim_demo.py:tiny`` (seconds, for tests).
"""

import ml_collections

# What experiments.sim_demo accepts, checked where the user typed it (before anything is
# written; grammar in spacer_jax.training.config_checks). Every variant's defaults pass.
RULES = {
    'seed': 'int >= 0',  # Generator seeds; numpy refuses negative ones.
    'num_scenarios': 'int >= 1',
    'num_objects': 'int >= 1',
    'num_roadgraph_points': 'int >= 1',
    'sim_agent': ('log_replay', 'constant_velocity', 'idm'),  # sim.agents.get_sim_agent.
    'controlled_object': ('sdc', 'modeled', 'valid'),  # sim.config.ControlledObjects.
    'num_render': 'int >= 0',
    'view_radius': 'float > 0',
}


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # First scenario seed; scenario i uses seed + i.
  config.num_scenarios = 8  # Scenarios simulated together (one vmapped batch).
  config.num_objects = 64  # Object slots per scenario.
  config.num_roadgraph_points = 20000  # Roadgraph slots per scenario (WOMD 1.0/1.1).
  # Sim agent driving every object valid at the start: log_replay | constant_velocity
  # | idm.
  config.sim_agent = 'idm'
  config.controlled_object = 'valid'  # sdc | modeled | valid
  config.num_render = 1  # Scenarios rendered to mp4 + png (0 to skip rendering).
  config.view_radius = 60.0  # Half-width of the rendered view, metres.
  if variant == 'tiny':
    config.num_scenarios = 2
    config.num_objects = 16
    config.num_roadgraph_points = 6000
    config.num_render = 1
  elif variant not in ('', 'default'):
    raise ValueError(f'unknown sim_demo config variant {variant!r} (tiny | default).')
  return config
