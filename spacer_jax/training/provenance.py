"""Where an artifact came from: the commit of the checkout that produced it."""

from __future__ import annotations

import os
import subprocess

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def git_commit(repo: str = _REPO) -> str:
  """``git rev-parse HEAD`` of ``repo``, ``+dirty`` when tracked files have uncommitted
  changes; ``'unknown'`` outside a git checkout (an installed wheel)."""
  try:
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
                          check=True, cwd=repo).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                           capture_output=True, text=True, check=True,
                           cwd=repo).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'
  return head + ('+dirty' if dirty else '')


__all__ = ['git_commit']
