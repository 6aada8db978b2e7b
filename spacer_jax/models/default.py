"""The default reference model: trained once on the default synthetic data, then cached.

``get_or_train_default_reference()`` returns the path of a reference artifact (see
``spacer_jax.models.checkpoint``) trained with the ``cpu`` variant of
``experiments/configs/reference.py`` on the default vocabulary. The first call trains
it (about 40 minutes on a 2-core CPU, printed as it goes) into
``$SPACER_JAX_CACHE/reference/`` (default ``~/.cache/spacer_jax``), next to the default
vocabulary; later calls return the cached copy. The same run by hand::

  python -m experiments.train_reference --config=experiments/configs/reference.py:cpu \
      --workdir=$HOME/.cache/spacer_jax/reference/default-cpu-v1-generator-v4-mirror_k200
"""

from __future__ import annotations

import os
import time

from spacer_jax.models.checkpoint import EXPORT_SUBDIR, load_reference
from spacer_jax.tokens.vocabulary import (
    DEFAULT_RECIPE,
    DEFAULT_STEPS_PER_TOKEN,
    cache_dir,
    default_vocabulary_path,
    get_or_build_default_vocabulary,
)

# Training recipe of the cached default reference; bump to invalidate old caches.
DEFAULT_REFERENCE_RECIPE = 'default-cpu-v1'


def default_reference_dir(num_tokens: int = 200) -> str:
  """The training workdir of the default reference for ``num_tokens`` tokens; named
  after the default vocabulary's recipe too, so a new vocabulary never meets a
  reference trained on an old one."""
  return os.path.join(cache_dir(), 'reference',
                      f'{DEFAULT_REFERENCE_RECIPE}-{DEFAULT_RECIPE}_k{num_tokens}')


def _cached(export: str) -> bool:
  try:
    load_reference(export)
  except (FileNotFoundError, ValueError):
    return False
  return True


def get_or_train_default_reference(num_tokens: int = 200) -> str:
  """Path of the default reference's export directory, training it first if absent.

  A partially trained cache (a killed run) resumes from its last checkpoint.
  """
  workdir = default_reference_dir(num_tokens)
  export = os.path.join(workdir, EXPORT_SUBDIR)
  final = os.path.join(workdir, 'final_metrics.json')
  if os.path.exists(final) and _cached(export):
    return export
  from experiments.configs import reference as reference_configs
  from spacer_jax.apps import train_reference
  config = reference_configs.get_config('cpu')
  config.tokens.num_tokens = num_tokens
  config.tokens.steps_per_token = DEFAULT_STEPS_PER_TOKEN
  print(f'No default reference for K={num_tokens} in {workdir}: building the default '
        f'vocabulary if needed, then training the "cpu" reference there (about '
        f'{config.train.time_budget_s / 60:.0f} minutes on a 2-core CPU; it resumes if '
        'interrupted).', flush=True)
  start = time.perf_counter()
  get_or_build_default_vocabulary(num_tokens, DEFAULT_STEPS_PER_TOKEN)
  config.tokens.vocabulary = default_vocabulary_path(num_tokens, DEFAULT_STEPS_PER_TOKEN)
  figures = train_reference.train_and_evaluate(config, workdir)
  print(f'default reference trained in {(time.perf_counter() - start) / 60:.1f} min: '
        f'{figures}', flush=True)
  return export


__all__ = ['DEFAULT_REFERENCE_RECIPE', 'default_reference_dir',
           'get_or_train_default_reference']
