"""Atomic, resumable checkpoints of a training-state pytree with orbax.

A checkpoint is a step directory ``WORKDIR/checkpoints/<step>/`` holding the state pytree
and a JSON metadata item (the run's config and anything the trainer wants to keep, such
as the data cursor). Orbax writes to a temporary directory and renames it only when
complete, so a run killed mid-save leaves the previous checkpoint intact; restoring
always takes the newest *finished* step.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves and restores ``(state pytree, JSON metadata)`` pairs under one directory.

  Args:
    directory: where step directories go (created if missing).
    max_to_keep: how many of the newest checkpoints to keep (older ones are deleted
      only after a newer one has been committed).
  """

  def __init__(self, directory: str, max_to_keep: int = 3):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> Optional[int]:
    """The newest committed step, or None when there is none."""
    return self._manager.latest_step()

  def save(self, step: int, state: Any, metadata: Optional[dict] = None,
           wait: bool = True) -> None:
    """Saves ``state`` (any pytree of arrays) and ``metadata`` (JSON-serialisable)
    as ``step``. With ``wait`` the call returns once the files are committed."""
    self._manager.save(
        int(step),
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                meta=ocp.args.JsonSave(metadata or {})),
        force=True)
    if wait:
      self._manager.wait_until_finished()

  def restore(self, template: Any = None, step: Optional[int] = None
              ) -> Optional[tuple[int, Any, dict]]:
    """Restores ``(step, state, metadata)``; None when there is no checkpoint.

    Args:
      template: a pytree with the structure, shapes and dtypes of the saved state
        (e.g. a freshly initialised state); arrays are restored onto its devices.
        None restores the tree as it was saved (e.g. frozen model parameters whose
        shapes the caller does not know in advance).
      step: a specific step, default the newest.

    Raises:
      ValueError: the checkpoint's tree does not match ``template`` (the message names
        the directory, so a config change between runs is easy to spot).
    """
    step = self.latest_step() if step is None else int(step)
    if step is None:
      return None
    abstract = (None if template is None
                else jax.tree.map(ocp.utils.to_shape_dtype_struct, template))
    try:
      out = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                        meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as err:
      raise ValueError(
          f'checkpoint {self.directory}/{step} does not match the current training '
          f'state (was the config changed between runs?): {err}') from err
    return step, out.state, dict(out.meta or {})

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
