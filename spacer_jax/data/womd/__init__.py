"""Waymo Open Motion Dataset readers and writers (no Waymo or Waymax packages needed).

- :mod:`tf_example`: WOMD ``tf.Example`` records <-> ``SimulatorState``.
- :mod:`scenario_proto`: WOMD ``Scenario`` protos (own runtime schema) <-> state.
- :mod:`dataset`: batched, host-sharded states from TFRecord files.

Importing this package imports TensorFlow with its GPUs hidden, so that JAX keeps the
accelerator memory.
"""

from spacer_jax.data.womd.assemble import RawScenario
from spacer_jax.data.womd.dataset import (
    DatasetConfig,
    ReadStats,
    WomdDataset,
    decode_indexed,
    decode_record,
    list_files,
    make_dataset,
    read_scenarios,
    set_format_flag,
    shard_files,
    sniff_format,
    with_format_hint,
)
from spacer_jax.data.womd.errors import RecordError
from spacer_jax.data.womd.records import RecordIndex, read_records, write_records
from spacer_jax.data.womd.scenario_proto import (
    parse_scenario,
    scenario_to_state,
    state_to_scenario_bytes,
)
from spacer_jax.data.womd.tf_example import (
    example_to_state,
    feature_spec,
    parse_example,
    state_to_example,
    tf_feature_description,
)

__all__ = [
    'DatasetConfig', 'RawScenario', 'ReadStats', 'RecordError', 'RecordIndex', 'WomdDataset',
    'decode_indexed', 'decode_record', 'example_to_state', 'feature_spec', 'list_files',
    'make_dataset', 'parse_example', 'parse_scenario', 'read_records', 'read_scenarios',
    'scenario_to_state', 'set_format_flag', 'shard_files', 'sniff_format', 'state_to_example',
    'state_to_scenario_bytes', 'tf_feature_description', 'with_format_hint', 'write_records',
]
