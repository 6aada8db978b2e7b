"""Errors raised by the WOMD readers, carrying where in the data they happened."""

from __future__ import annotations

import re
from typing import Optional

from spacer_jax.sim.datatypes import DataValidationError


class RecordError(ValueError):
  """A WOMD record could not be read or holds bad data.

  Attributes:
    file: path of the TFRecord file, or None when parsing bytes handed over directly.
    record_index: 0-based index of the record in its file, or None.
    field: the feature / proto field / datatype field at fault (e.g.
      ``'state/future/x'``, ``'tracks[3].states[50].center_x'``, ``'Trajectory.x'``,
      or ``'record'`` for TFRecord framing and checksum errors).
    reason: what is wrong, without the location.
  """

  def __init__(self, reason: str, *, field: Optional[str] = None,
               file: Optional[str] = None, record_index: Optional[int] = None):
    self.reason = reason
    self.field = field
    self.file = file
    self.record_index = record_index
    super().__init__(self._message())

  def _message(self) -> str:
    where = []
    if self.file is not None:
      where.append(f'file {self.file}')
    if self.record_index is not None:
      where.append(f'record {self.record_index}')
    if self.field is not None:
      where.append(f'field {self.field!r}')
    prefix = ', '.join(where)
    return f'{prefix}: {self.reason}' if prefix else self.reason

  def with_location(self, file: Optional[str], record_index: Optional[int]) -> RecordError:
    """A copy of this error that also names the file and record index."""
    return RecordError(self.reason, field=self.field,
                       file=self.file if file is None else file,
                       record_index=self.record_index if record_index is None
                       else record_index)

  def __reduce__(self):
    # Keyword-only constructor arguments: make the error survive pickling (e.g. when
    # raised inside a worker process).
    return (_rebuild, (self.reason, self.field, self.file, self.record_index))


def _rebuild(reason, field, file, record_index) -> RecordError:
  return RecordError(reason, field=field, file=file, record_index=record_index)


_FIELD_RE = re.compile(r'^(\w+\.\w+)')


def from_validation_error(err: DataValidationError) -> RecordError:
  """Wraps a datatype ``validate()`` error, keeping the ``Class.field`` it names."""
  text = str(err)
  match = _FIELD_RE.match(text)
  return RecordError(text, field=match.group(1) if match else None)
