"""A trained reference model as a self-describing artifact: parameters + config + vocabulary.

``save_reference(dir, ...)`` writes an orbax checkpoint whose metadata carries the
model's :class:`ReferenceConfig`, the vocabulary it predicts (path and fingerprint) and
its evaluation figures; ``load_reference(path)`` rebuilds everything a consumer needs
(SPACER's train step, sim-agent rollouts, evaluation) from that one path. ``path`` may
be the export directory itself or a ``train_reference`` workdir (its ``export/``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from spacer_jax.models.config import ReferenceConfig
from spacer_jax.training.checkpoints import Checkpointer, staged_directory

FORMAT = 'spacer_jax.reference/1'
EXPORT_SUBDIR = 'export'


@dataclasses.dataclass(frozen=True)
class LoadedReference:
  """A reference model ready to query.

  Attributes:
    config: the model's config.
    params: its variables (``{'params': ...}``), as restored.
    vocabulary_path: path of the token vocabulary artifact it was trained on.
    metadata: everything else saved with it (training step, eval figures, ...).
  """

  config: ReferenceConfig
  params: Any
  vocabulary_path: str
  metadata: dict


def save_reference(directory: str, config: ReferenceConfig, params: Any,
                   vocabulary_path: str, metadata: dict | None = None, *,
                   relative_vocabulary: bool = False) -> str:
  """Writes the artifact atomically into ``directory`` (replacing an older export).

  ``relative_vocabulary`` stores the vocabulary path relative to ``directory`` so the
  artifact and its vocabulary can move together (the packaged default reference).
  """
  meta = dict(metadata or {})
  vocabulary = os.path.abspath(vocabulary_path)
  if relative_vocabulary:
    vocabulary = os.path.relpath(vocabulary, os.path.abspath(directory))
  meta.update(format=FORMAT, reference_config=dataclasses.asdict(config),
              vocabulary=vocabulary)
  step = int(meta.get('step', 0))
  # Written beside the target and swapped in whole: re-exporting the same step (a run
  # resumed after its export but before finishing) replaces it instead of failing, and
  # a reader never sees a half-written export.
  with staged_directory(directory, prefix='.export_') as staging:
    ckpt = Checkpointer(staging, max_to_keep=1)
    ckpt.save(step, {'params': params}, meta)
    ckpt.close()
  return os.path.abspath(directory)


def _export_dir(path: str) -> str:
  if not os.path.isdir(path):
    raise FileNotFoundError(f'reference checkpoint {path!r} does not exist.')
  sub = os.path.join(path, EXPORT_SUBDIR)
  return sub if os.path.isdir(sub) else path


def load_reference(path: str) -> LoadedReference:
  """Loads an artifact written by :func:`save_reference` (or a workdir holding one).

  Raises:
    FileNotFoundError: nothing there.
    ValueError: not a reference artifact, or an unknown format version.
  """
  directory = _export_dir(path)
  out = Checkpointer(directory).restore(None)
  if out is None:
    raise ValueError(f'{directory} holds no finished reference checkpoint.')
  _, state, meta = out
  if meta.get('format') != FORMAT:
    raise ValueError(f'{directory} is not a reference artifact of format {FORMAT!r} '
                     f'(found format {meta.get("format")!r}).')
  fields = {f.name for f in dataclasses.fields(ReferenceConfig)}
  config = ReferenceConfig(**{k: v for k, v in meta['reference_config'].items()
                              if k in fields})
  vocabulary = meta['vocabulary']
  if not os.path.isabs(vocabulary):  # Stored relative to the artifact (it was moved).
    vocabulary = os.path.normpath(os.path.join(directory, vocabulary))
  return LoadedReference(config=config, params=state['params'],
                         vocabulary_path=vocabulary, metadata=meta)


__all__ = ['FORMAT', 'LoadedReference', 'load_reference', 'save_reference']
