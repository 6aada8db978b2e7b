"""The default reference model: shipped with the package, else trained once and cached.

``get_or_train_default_reference()`` first returns the reference packaged in
``spacer_jax/models/assets/default_reference/`` (weights, its vocabulary and
``ship.json`` naming the command, commit and data recipe that produced it) when it was
trained on today's vocabulary recipe and reference recipe; ``ship_reference`` (behind
``python -m experiments.ship_reference``) puts a trained one there. Otherwise:

``get_or_train_default_reference()`` returns the path of a reference artifact (see
``spacer_jax.models.checkpoint``) trained with the ``cpu`` variant of
``spacer_jax.models.recipes`` (``experiments/configs/reference.py``) on the default
vocabulary. The first call trains it (about 40 minutes on a 2-core CPU, printed as it
goes) into
``$SPACER_JAX_CACHE/reference/`` (default ``~/.cache/spacer_jax``), next to the default
vocabulary; later calls return the cached copy. The same run by hand::

  python -m experiments.train_reference --config=experiments/configs/reference.py:cpu \
      --workdir=$HOME/.cache/spacer_jax/reference/default-cpu-v2-generator-v5-mirror_k200
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any, Optional

from spacer_jax.models.checkpoint import EXPORT_SUBDIR, load_reference, save_reference
from spacer_jax.models.default_vocabulary import (
  DEFAULT_RECIPE,
  default_vocabulary_path,
  get_or_build_default_vocabulary,
)
from spacer_jax.tokens.vocabulary import (
  DEFAULT_STEPS_PER_TOKEN,
  cache_dir,
  load_vocabulary_metadata,
)
from spacer_jax.training.checkpoints import staged_directory

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'assets',
                           'default_reference')
SHIP_FILE = 'ship.json'
SHIPPED_VOCABULARY = 'vocabulary.npz'

# Training recipe of the cached default reference; bump to invalidate old caches.
# v2: map-aware (every agent sees the whole map) and trained on noised tokens.
DEFAULT_REFERENCE_RECIPE = 'default-cpu-v2'
# The seconds-sized default for tiny configs (``variant='tiny'``): it chains the tiny
# binaries on an empty cache; it is not a usable sim agent.
TINY_REFERENCE_RECIPE = 'default-tiny-v1'
VARIANTS = ('cpu', 'tiny')


def default_reference_dir(num_tokens: int = 200, variant: str = 'cpu') -> str:
  """The training workdir of the default reference for ``num_tokens`` tokens; named
  after the default vocabulary's recipe too, so a new vocabulary never meets a
  reference trained on an old one."""
  if variant not in VARIANTS:
    raise ValueError(f'default reference variant {variant!r}; expected one of {VARIANTS}')
  recipe = DEFAULT_REFERENCE_RECIPE if variant == 'cpu' else TINY_REFERENCE_RECIPE
  return os.path.join(cache_dir(), 'reference', f'{recipe}-{DEFAULT_RECIPE}_k{num_tokens}')


def _cached(export: str) -> bool:
  try:
    load_reference(export)
  except (FileNotFoundError, ValueError):
    return False
  return True


def shipped_reference_info(directory: str = SHIPPED_DIR) -> Optional[dict[str, Any]]:
  """``ship.json`` of a packaged reference (None when nothing is packaged there)."""
  path = os.path.join(directory, SHIP_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def shipped_default_reference(num_tokens: int = 200,
                              directory: str = SHIPPED_DIR) -> Optional[str]:
  """Export path of the packaged default reference, or None when there is none or it
  was trained on another vocabulary recipe, reference recipe or token count (then it
  must not be used: its token ids would mean other motions)."""
  info = shipped_reference_info(directory)
  if info is None:
    return None
  if (info.get('vocabulary_recipe') != DEFAULT_RECIPE
      or info.get('reference_recipe') != DEFAULT_REFERENCE_RECIPE
      or info.get('num_tokens') != num_tokens):
    return None
  return os.path.join(directory, EXPORT_SUBDIR)


def ship_reference(source: str, command: str, commit: str,
                   directory: str = SHIPPED_DIR) -> str:
  """Packages a trained reference (an export or ``train_reference`` workdir).

  Copies its weights and vocabulary into ``directory`` (the vocabulary path stored
  relative, so the package can live anywhere) and writes ``ship.json`` with the command
  and commit that produced it, its recipes, training figures and evaluation. The new
  package replaces an old one only once complete.
  """
  loaded = load_reference(source)
  vocab_meta = load_vocabulary_metadata(loaded.vocabulary_path)
  based_on = _init_ship_info(source)  # Read before the package may be replaced.
  with staged_directory(directory, prefix='.ship_') as staging:
    vocab_path = os.path.join(staging, SHIPPED_VOCABULARY)
    shutil.copyfile(loaded.vocabulary_path, vocab_path)
    if os.path.exists(loaded.vocabulary_path + '.json'):
      shutil.copyfile(loaded.vocabulary_path + '.json', vocab_path + '.json')
    keep = {k: v for k, v in loaded.metadata.items()
            if k not in ('format', 'reference_config', 'vocabulary')}
    save_reference(os.path.join(staging, EXPORT_SUBDIR), loaded.config, loaded.params,
                   vocab_path, keep, relative_vocabulary=True)
    info = {
        'command': command,
        'commit': commit,
        'reference_recipe': DEFAULT_REFERENCE_RECIPE,
        'vocabulary_recipe': vocab_meta.get('recipe'),
        'num_tokens': loaded.config.num_tokens,
        'steps_per_token': vocab_meta.get('steps_per_token'),
        'data': keep.get('data'),
        'step': keep.get('step'),
        'train_seconds': keep.get('train_seconds'),
        'num_params': keep.get('num_params'),
        'eval': keep.get('eval'),
    }
    if based_on is not None:
      # A fine-tuned package (e.g. CAT-K from the previous one) keeps its whole lineage.
      info['fine_tuned'] = bool(keep.get('catk'))
      info['based_on'] = based_on
    with open(os.path.join(staging, SHIP_FILE), 'w') as f:
      json.dump(info, f, indent=2, sort_keys=True)
  return os.path.join(directory, EXPORT_SUBDIR)


def describe_default_reference(num_tokens: int = 200, variant: str = 'cpu') -> str:
  """Where ``get_or_train_default_reference`` will find the default reference, and
  roughly what that costs: a line for a binary's up-front plan."""
  if variant == 'cpu' and shipped_default_reference(num_tokens) is not None:
    return 'the packaged default reference (loads in seconds)'
  workdir = default_reference_dir(num_tokens, variant)
  if os.path.exists(os.path.join(workdir, 'final_metrics.json')):
    return f'the cached default reference in {workdir} (loads in seconds)'
  took = 'seconds' if variant == 'tiny' else 'about 45 minutes on a 2-core CPU, once'
  return (f'no default reference for K={num_tokens} yet: trains the "{variant}" one '
          f'first into {workdir} ({took})')


def _init_ship_info(source: str) -> Optional[dict[str, Any]]:
  """``ship.json`` of the package a ``train_reference`` run started from
  (``init_checkpoint``), if it started from one; else None."""
  workdir = source if os.path.isdir(os.path.join(source, EXPORT_SUBDIR)) else (
      os.path.dirname(os.path.normpath(source)))
  try:
    with open(os.path.join(workdir, 'config.json')) as f:
      init = json.load(f).get('init_checkpoint') or ''
  except (OSError, ValueError):
    return None
  init = init if os.path.isdir(init) else os.path.dirname(os.path.normpath(init))
  return shipped_reference_info(init) if init else None


def get_or_train_default_reference(num_tokens: int = 200, variant: str = 'cpu') -> str:
  """Path of the default reference's export directory: the packaged one when it fits
  today's recipes, else the cached one, training it first if absent.

  ``variant='tiny'`` is the seconds-sized reference of the tiny configs (trained with
  ``reference.py:tiny`` in a few seconds; never the packaged one). A partially trained
  cache (a killed run) resumes from its last checkpoint.
  """
  if variant == 'cpu':
    shipped = shipped_default_reference(num_tokens)
    if shipped is not None and _cached(shipped):
      return shipped
  workdir = default_reference_dir(num_tokens, variant)
  export = os.path.join(workdir, EXPORT_SUBDIR)
  final = os.path.join(workdir, 'final_metrics.json')
  if os.path.exists(final) and _cached(export):
    return export
  # Imported here: the trainer imports much of the library, this module very little.
  from spacer_jax.models import recipes, trainer
  config = recipes.get_config(variant)
  config.tokens.num_tokens = num_tokens
  config.tokens.steps_per_token = DEFAULT_STEPS_PER_TOKEN
  took = ('seconds' if variant == 'tiny' else
          f'about {config.train.time_budget_s / 60:.0f} minutes on a 2-core CPU')
  print(f'No default reference for K={num_tokens} in {workdir}: building the default '
        f'vocabulary if needed, then training the "{variant}" reference there ({took}; '
        'it resumes if interrupted).', flush=True)
  start = time.perf_counter()
  get_or_build_default_vocabulary(num_tokens, DEFAULT_STEPS_PER_TOKEN)
  config.tokens.vocabulary = default_vocabulary_path(num_tokens, DEFAULT_STEPS_PER_TOKEN)
  figures = trainer.train_and_evaluate(config, workdir)
  print(f'default reference trained in {(time.perf_counter() - start) / 60:.1f} min: '
        f'{figures}', flush=True)
  return export


__all__ = ['DEFAULT_REFERENCE_RECIPE', 'SHIPPED_DIR', 'TINY_REFERENCE_RECIPE', 'VARIANTS',
           'describe_default_reference',
           'default_reference_dir', 'get_or_train_default_reference', 'ship_reference',
           'shipped_default_reference', 'shipped_reference_info']
