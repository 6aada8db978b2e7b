"""Run directories that never lose a result: config checks on resume, finished runs.

A trainer calls :func:`accept_config` before it writes anything: a new workdir gets
``config.json``; an existing one must hold the same config, except for the fields a
user may safely change on a resumed run (its budget, logging cadence). A trainer whose
checkpoints already reach its budget and that wrote ``final_metrics.json`` is finished:
:func:`finished_metrics` returns those figures so the rerun touches nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, Optional

import ml_collections

CONFIG_FILE = 'config.json'
FINAL_FILE = 'final_metrics.json'


class RunConfigMismatch(ValueError):
  """An existing run directory was started with another config."""


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  if isinstance(tree, dict):
    out: dict[str, Any] = {}
    for key, value in tree.items():
      out.update(_flatten(value, f'{prefix}{key}.'))
    return out
  return {prefix[:-1]: tree}


def _existing_ancestor(path: str) -> str:
  """The nearest ancestor of ``path`` that exists (where creating it would start)."""
  parent = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  return parent


def check_workdir(workdir: str, name: str = 'workdir') -> None:
  """Makes sure ``workdir`` is a writable directory, creating it when missing.

  Every binary calls it on its output directory before any other work, so a bad one
  is refused in one line (``name`` is how the message calls it, e.g. ``--out``).

  Raises:
    ValueError: ``workdir`` is a file, lies under a file, or cannot be written; nothing
      is created then.
  """
  if os.path.isdir(workdir):
    target = workdir
  elif os.path.exists(workdir):
    raise ValueError(f'{name} {workdir} is a file; expected a directory (it is created '
                     'if missing)')
  else:
    # Checked where creation would start, so that a refusal leaves no parent behind.
    target = _existing_ancestor(workdir)
    if not os.path.isdir(target):
      raise ValueError(f'cannot create {name} {workdir}: {target} is a file, not a '
                       'directory')
  if not os.access(target, os.W_OK | os.X_OK):
    raise ValueError(f'cannot write to {name} {workdir}: permission denied')
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:  # e.g. a read-only file system
    raise ValueError(f'cannot create {name} {workdir}: {e.strerror}') from e


def accept_config(workdir: str, config: ml_collections.ConfigDict,
                  safe_to_change: tuple[str, ...] = (),
                  added_fields: Optional[dict[str, Any]] = None,
                  upgrade: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None
                  ) -> None:
  """Writes ``config.json`` for a new run, or checks a resumed run's config.

  ``added_fields`` maps fields added to the config after older runs were written to
  the value those runs implicitly had (e.g. ``{'policy.network': 'late_fusion'}``), so
  they still resume; ``upgrade`` maps a stored config of an older layout (moved
  fields) to today's before the comparison. An upgraded run's file is rewritten in
  today's layout.

  Raises:
    RunConfigMismatch: the workdir's ``config.json`` differs in fields outside
      ``safe_to_change`` (named, with both values); nothing is written then.
  """
  check_workdir(workdir)
  path = os.path.join(workdir, CONFIG_FILE)
  new = json.loads(config.to_json_best_effort())
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    if upgrade is not None:
      old = upgrade(old)
    before, after = {**(added_fields or {}), **_flatten(old)}, _flatten(new)
    changed = sorted(k for k in set(before) | set(after)
                     if before.get(k) != after.get(k) and k not in safe_to_change)
    if changed:
      shown = '; '.join(f'{k}: {before.get(k)!r} -> {after.get(k)!r}' for k in changed[:8])
      more = f' (and {len(changed) - 8} more)' if len(changed) > 8 else ''
      raise RunConfigMismatch(
          f'{workdir} holds a run started with another config: {shown}{more}. Resume it '
          f'with its own config (only {", ".join(safe_to_change) or "nothing"} may '
          'change), or use a new --workdir.')
  text = config.to_json_best_effort(indent=2)
  if os.path.exists(path):
    with open(path) as f:
      if f.read() == text:
        return  # The same run again: leave the file as it was.
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def finished_metrics(workdir: str, latest_step: Optional[int], total: int
                     ) -> Optional[dict[str, Any]]:
  """The stored final figures when the run reached ``total`` steps and finished."""
  path = os.path.join(workdir, FINAL_FILE)
  if latest_step is None or latest_step < total or not os.path.exists(path):
    return None
  with open(path) as f:
    metrics = json.load(f)
  return metrics if metrics else None


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes ``obj`` as indented JSON to ``path`` through a temporary file, so a reader
  never sees half a file."""
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def write_final_metrics(workdir: str, metrics: dict[str, Any]) -> None:
  """Writes ``final_metrics.json`` atomically."""
  write_json_atomic(os.path.join(workdir, FINAL_FILE), metrics)


__all__ = ['CONFIG_FILE', 'FINAL_FILE', 'RunConfigMismatch', 'accept_config',
           'check_workdir', 'finished_metrics', 'write_final_metrics', 'write_json_atomic']
