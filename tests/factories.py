"""Small shared test settings (imported by the test modules next to this file)."""

from spacer_jax.eval.realism import RealismOptions
from spacer_jax.sim.metrics import road_edges


def small_realism_options(**overrides) -> RealismOptions:
  """Realism options sized for scenes of a few objects and a small road-edge grid."""
  settings = dict(
      max_evaluated_objects=4, rollout_batch_size=None, road_edge_fallback=16,
      red_light_checks=8, max_lane_points=512,
      road_edge_index=road_edges.RoadEdgeIndexConfig(grid_size=32, block_size=4,
                                                     candidates_per_cell=32,
                                                     candidates_per_block=256))
  settings.update(overrides)
  return RealismOptions(**settings)
