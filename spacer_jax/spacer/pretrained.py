"""Pretrained self-play sim agents shipped with the package: ``spacer:default`` & co.

A packaged policy is a small ``train_spacer`` workdir under
``spacer_jax/spacer/assets/pretrained/<kind>/``: its ``config.json`` (with the
vocabulary path made relative), one checkpoint holding only the policy parameters
(no optimizer state), the vocabulary it acts in, and ``ship.json`` naming the command,
commit and recipes that produced it with its training figures. ``load_policy`` reads it
for the spec ``<kind>:default`` exactly as it reads any workdir.

``python -m experiments.ship_policy --kind spacer --source WORKDIR --command "..."``
packages a finished run. A packaged policy is used only while its vocabulary recipe
is today's (its token ids would mean other motions otherwise); a test checks that
every shipped one loads and matches.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Optional

import ml_collections

from spacer_jax.models.default_vocabulary import DEFAULT_RECIPE
from spacer_jax.spacer.factory import upgrade_config
from spacer_jax.tokens.vocabulary import load_vocabulary_metadata
from spacer_jax.training import Checkpointer
from spacer_jax.training.checkpoints import staged_directory

PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'assets',
                              'pretrained')
KINDS = ('spacer', 'ppo', 'hr_ppo')
SHIP_FILE = 'ship.json'
BEST_FILE = 'best.json'  # What apps.train_spacer.BestCheckpoint writes next to its state.
VOCABULARY_FILE = 'vocabulary.npz'


def pretrained_dir(kind: str, root: Optional[str] = None) -> str:
  """Where the packaged ``kind`` policy lives (whether or not one is there); ``root``
  defaults to the package's :data:`PRETRAINED_DIR`."""
  if kind not in KINDS:
    raise ValueError(f'no pretrained policy kind {kind!r}; expected one of {KINDS}.')
  return os.path.join(root or PRETRAINED_DIR, kind)


def pretrained_info(kind: str, root: Optional[str] = None) -> Optional[dict[str, Any]]:
  """``ship.json`` of the packaged ``kind`` policy, or None when none is packaged."""
  path = os.path.join(pretrained_dir(kind, root), SHIP_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def find_pretrained(kind: str, root: Optional[str] = None) -> str:
  """The workdir of the packaged ``kind`` policy for ``load_policy('<kind>:default')``.

  Raises:
    FileNotFoundError: nothing is packaged for ``kind``.
    ValueError: the package was trained on another vocabulary recipe than today's.
  """
  info = pretrained_info(kind, root)
  directory = pretrained_dir(kind, root)
  if info is None:
    raise FileNotFoundError(
        f'no pretrained {kind!r} policy is packaged ({directory} has no {SHIP_FILE}); '
        f'train one (python -m experiments.train_spacer '
        f'--config=experiments/configs/spacer.py:cpu{"" if kind == "spacer" else "," + kind}'
        ' --workdir=DIR) and use '
        f'{kind}:DIR, or package it with python -m experiments.ship_policy.')
  if info.get('vocabulary_recipe') != DEFAULT_RECIPE:
    raise ValueError(f'the packaged {kind!r} policy was trained on vocabulary recipe '
                     f'{info.get("vocabulary_recipe")!r}, today\'s is {DEFAULT_RECIPE!r}: '
                     'its tokens would mean other motions; retrain and reship it.')
  return directory


def resolve_vocabulary(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Makes a relative ``config.tokens.vocabulary`` (a packaged policy's) absolute
  against ``workdir``, in place."""
  path = config.tokens.get('vocabulary', '')
  if path and not os.path.isabs(path):
    with config.unlocked():
      config.tokens.vocabulary = os.path.join(workdir, path)


def _reference_origin(config: ml_collections.ConfigDict) -> Any:
  """What the run was anchored to: its reference checkpoint, or for the default
  reference the packaged one's recipe and commit."""
  if config.get('variant') != 'spacer':
    return None
  if config.reference.get('checkpoint'):
    return config.reference.checkpoint
  from spacer_jax.models.default import shipped_reference_info
  shipped = shipped_reference_info() or {}
  return {'spec': 'reference:default', 'commit': shipped.get('commit'),
          'reference_recipe': shipped.get('reference_recipe'),
          'fine_tuned': shipped.get('fine_tuned', False)}


def ship_policy(kind: str, source: str, command: str, commit: str,
                root: Optional[str] = None) -> str:
  """Packages the finished ``train_spacer`` run ``source`` as ``<kind>:default``.

  Keeps the newest checkpoint's policy parameters only, the run's config (vocabulary
  path relative) and vocabulary, and writes ``ship.json``. The package replaces an old
  one only once complete. Returns the package directory.

  ``source`` may also be the ``best/`` folder of a finished run (the state with the best
  validation, ``train.best_*``): its checkpoint is packaged, ``ship.json`` carries the
  run's final metrics and, under ``best``, the iteration and validation figures of the
  state shipped.

  Raises:
    ValueError: ``source`` holds another kind of run, no checkpoint, or is unfinished.
    FileNotFoundError: ``source`` is not a ``train_spacer`` workdir.
  """
  config_path = os.path.join(source, 'config.json')
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f'{source!r} is not a train_spacer workdir: no config.json.')
  with open(config_path) as f:
    config = ml_collections.ConfigDict(upgrade_config(json.load(f)))
  if config.get('variant') != kind:
    raise ValueError(f'{source!r} holds a {config.get("variant")!r} run, not {kind!r}.')
  best_path = os.path.join(source, BEST_FILE)
  best = None
  run = source
  if os.path.exists(best_path):
    with open(best_path) as f:
      best = json.load(f)
    run = os.path.dirname(os.path.normpath(source))
  final_path = os.path.join(run, 'final_metrics.json')
  if not os.path.exists(final_path):
    raise ValueError(f'{run!r} has not finished (no final_metrics.json): package a '
                     'finished run.')
  with open(final_path) as f:
    final = json.load(f)
  restored = Checkpointer(os.path.join(source, 'checkpoints')).restore(None)
  if restored is None:
    raise ValueError(f'{source!r} holds no finished checkpoint.')
  step, state, meta = restored
  if best is not None:
    # The best state's checkpoint names only its iteration and validation; the rest
    # comes from the run's newest checkpoint, but not its agent-step count.
    newest = Checkpointer(os.path.join(run, 'checkpoints')).restore(None)
    meta = {**(newest[2] if newest else {}), **meta, 'agent_steps': None}
  vocab_path = config.tokens.vocabulary or meta.get('vocabulary')
  if not vocab_path or not os.path.exists(vocab_path):
    raise FileNotFoundError(f'the vocabulary of {source!r} ({vocab_path!r}) does not '
                            'exist here.')
  vocab_meta = load_vocabulary_metadata(vocab_path)
  with staged_directory(pretrained_dir(kind, root), prefix='.ship_') as staging:
    shutil.copyfile(vocab_path, os.path.join(staging, VOCABULARY_FILE))
    if os.path.exists(vocab_path + '.json'):
      shutil.copyfile(vocab_path + '.json', os.path.join(staging, VOCABULARY_FILE + '.json'))
    ckpt = Checkpointer(os.path.join(staging, 'checkpoints'))
    ckpt.save(step, {'params': state['params']}, meta)
    ckpt.close()
    with config.unlocked():
      config.tokens.vocabulary = VOCABULARY_FILE
    with open(os.path.join(staging, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
    info = {
        'kind': kind,
        'command': command,
        'commit': commit,
        'vocabulary_recipe': vocab_meta.get('recipe'),
        'num_tokens': config.tokens.num_tokens,
        'iteration': step,
        'agent_steps': (meta or {}).get('agent_steps'),
        'num_params': (meta or {}).get('num_params'),
        'reference': _reference_origin(config),
        'final_metrics': final,
    }
    if best is not None:
      info['best'] = best
    with open(os.path.join(staging, SHIP_FILE), 'w') as f:
      json.dump(info, f, indent=2, sort_keys=True)
  return pretrained_dir(kind, root)


__all__ = ['KINDS', 'PRETRAINED_DIR', 'find_pretrained', 'pretrained_dir', 'pretrained_info',
           'resolve_vocabulary', 'ship_policy']
