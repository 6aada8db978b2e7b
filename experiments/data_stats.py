"""Realism statistics of a dataset (or of the generator): speed, acceleration, yaw
rate, gap and time headway to the leader, signed distance to the road edge, per type.

  python -m experiments.data_stats --data 'DIR/train/*' [--format tf_example|scenario] \
      [--max_scenarios N] [--skip_bad_records] [--num_objects 128] [--json out.json]
  python -m experiments.data_stats --generate 200 [--seed 0] [--num_objects 64] \
      [--num_workers 2] [--json out.json]

``--generate N`` computes the statistics of the first N scenarios of the synthetic
``train`` split (the scenarios ``make_dataset`` writes with the same seed and sizes)
without writing them. See docs/data.md for the definitions and typical WOMD figures.
"""

import itertools
import json

from absl import app, flags

from spacer_jax.data import stats, womd, writer
from spacer_jax.sim.builders import stack_states
from spacer_jax.training.console import parse_flags, report_user_errors

_DATA = flags.DEFINE_string('data', None, 'Glob(s) of TFRecord files to read.')
_FORMAT = flags.DEFINE_enum('format', 'tf_example', womd.dataset.FORMATS, 'Record format.')
_MAX = flags.DEFINE_integer('max_scenarios', None, 'Read at most this many scenarios.')
_SKIP = flags.DEFINE_bool('skip_bad_records', False,
                          'Skip (count and report) bad records instead of failing.')
_GENERATE = flags.DEFINE_integer('generate', None, 'Use N generated scenarios instead.')
_SEED = flags.DEFINE_integer('seed', 0, 'Dataset seed for --generate.')
_OBJECTS = flags.DEFINE_integer('num_objects', None,
                                'Object slots (default: 128 to read, 64 to generate).')
_POINTS = flags.DEFINE_integer('num_roadgraph_points', 20000, 'Roadgraph slots.')
_WORKERS = flags.DEFINE_integer('num_workers', 1, 'Generator processes for --generate.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Scenarios per statistics batch.')
_JSON = flags.DEFINE_string('json', None, 'Also write the statistics as JSON here.')


def _batches():
  """Batched states from the chosen source; returns (iterator, reader or None)."""
  if _GENERATE.value is not None:
    config = writer.WriterConfig(out_dir='', num_scenarios=max(_GENERATE.value, 1),
                                 seed=_SEED.value, num_objects=_OBJECTS.value or 64,
                                 num_roadgraph_points=_POINTS.value).generator_config()
    states = (s for _, s in writer.generate_states(range(_GENERATE.value), 'train',
                                                   _SEED.value, config, _WORKERS.value))
    return (stack_states(list(itertools.islice(states, _BATCH.value)))
            for _ in range(-(-_GENERATE.value // _BATCH.value))), None
  reader = womd.make_dataset(_DATA.value, format=_FORMAT.value, batch_size=None,
                             max_num_objects=_OBJECTS.value or 128,
                             max_num_rg_points=_POINTS.value,
                             skip_bad_records=_SKIP.value, num_hosts=1, host_index=0)
  states = itertools.islice(reader, _MAX.value)
  batches = iter(lambda: list(itertools.islice(states, _BATCH.value)), [])
  return (stack_states(b) for b in batches), reader


def _check_flags() -> None:
  """Raises ValueError naming the first flag the statistics cannot run with."""
  if (_DATA.value is None) == (_GENERATE.value is None):
    raise ValueError('give exactly one of --data and --generate')
  for flag, value, least in (('--generate', _GENERATE.value, 1),
                             ('--max_scenarios', _MAX.value, 0),
                             ('--num_objects', _OBJECTS.value, 1),
                             ('--num_roadgraph_points', _POINTS.value, 1),
                             ('--num_workers', _WORKERS.value, 1),
                             ('--batch_size', _BATCH.value, 1)):
    if value is not None and value < least:
      raise ValueError(f'{flag} must be >= {least}, got {value}')


def main(argv):
  del argv
  _check_flags()
  womd.set_format_flag('--format')  # How a wrong-format hint names it here.
  batches, reader = _batches()
  result = stats.realism_stats(batches)
  print(result.table())
  out = result.to_json()
  if reader is not None:
    out['records_read'] = reader.stats.records_read
    out['records_skipped'] = reader.stats.records_skipped
    print(f'records read: {reader.stats.records_read}, skipped as bad: '
          f'{reader.stats.records_skipped}')
    for err in reader.stats.errors[:10]:
      print(f'  skipped: {err}')
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump(out, f, indent=1)


if __name__ == '__main__':
  app.run(report_user_errors(main), flags_parser=parse_flags)
