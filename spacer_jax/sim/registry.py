"""Named registries: one ``register`` / ``get`` shape for every pluggable part.

Dynamics models, scripted sim agents, policy networks, evaluation policies and planner
families each keep a :class:`Registry`; their modules expose ``register_<thing>`` and
``get_<thing>`` on top of it, so adding one is a class plus one ``register_*`` call.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar('T')


class Registry(Generic[T]):
  """Name -> value (a class or a factory) for one kind of part.

  Args:
    what: the kind, as error messages name it (e.g. ``'dynamics model'``).
  """

  def __init__(self, what: str):
    self.what = what
    self._items: dict[str, T] = {}

  def register(self, name: str, value: T, overwrite: bool = False) -> T:
    """Adds ``value`` under ``name``; returns it (usable as a decorator's body).

    Raises:
      ValueError: ``name`` is taken by another value and ``overwrite`` is False.
    """
    if not name or not isinstance(name, str):
      raise ValueError(f'{self.what} names are non-empty strings, got {name!r}.')
    if name in self._items and self._items[name] is not value and not overwrite:
      raise ValueError(f'{self.what} {name!r} is already registered '
                       f'({self._items[name]!r}); pass overwrite=True to replace it.')
    self._items[name] = value
    return value

  def get(self, name: str) -> T:
    """The value registered under ``name``.

    Raises:
      ValueError: unknown name; the message lists the registered ones and the nearest.
    """
    if name not in self._items:
      close = difflib.get_close_matches(str(name), list(self._items), n=1)
      hint = f'; did you mean {close[0]!r}?' if close else ''
      raise ValueError(f'Unknown {self.what} {name!r}; expected one of '
                       f'{sorted(self._items)}{hint}')
    return self._items[name]

  def unregister(self, name: str) -> None:
    """Removes ``name`` (a no-op when absent): tests that register throw-away parts
    leave the process's registries as they found them."""
    self._items.pop(name, None)

  def names(self) -> tuple[str, ...]:
    return tuple(sorted(self._items))

  def __contains__(self, name: object) -> bool:
    return name in self._items

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())


__all__ = ['Registry']
