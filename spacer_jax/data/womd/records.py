"""TFRecord files: reading with per-record error reports, and writing.

TensorFlow's reader checks every record's CRC32C in C++; this module adds what it
lacks: when a record is truncated or corrupt, the error names the file and the record
index, and with ``skip_bad_records`` the reader reports the record and carries on with
the next one when the file's framing allows it.

TFRecord framing (little endian), per record::

  uint64 length | uint32 masked_crc32c(length) | bytes data[length] | uint32 masked_crc32c(data)
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Optional

from spacer_jax.data.womd._tf import tf
from spacer_jax.data.womd.errors import RecordError

_HEADER_BYTES = 12  # uint64 length + uint32 crc of the length
_FOOTER_BYTES = 4  # uint32 crc of the data


def _crc32c_table() -> list[int]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    table.append(crc)
  return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli) of ``data``. Pure Python: meant for short headers only."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """The masked CRC that TFRecord stores (rotate right by 15, add a constant)."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _record_offset(f, index: int) -> int:
  """Byte offset of record ``index``, found by walking the length headers."""
  offset = 0
  for _ in range(index):
    f.seek(offset)
    (length,) = struct.unpack('<Q', f.read(8))
    offset += _HEADER_BYTES + length + _FOOTER_BYTES
  return offset


def _diagnose(path: str, index: int) -> tuple[str, Optional[int]]:
  """Why record ``index`` of ``path`` failed, and where the next record starts.

  Returns:
    (reason, next_offset); next_offset is None when the rest of the file cannot be
    framed (truncated file or corrupt length header).
  """
  size = tf.io.gfile.stat(path).length
  with tf.io.gfile.GFile(path, 'rb') as f:
    try:
      offset = _record_offset(f, index)
    except struct.error:
      return 'the file ends inside an earlier record header', None
    f.seek(offset)
    header = f.read(_HEADER_BYTES)
    if len(header) < _HEADER_BYTES:
      return (f'truncated record: the file ends inside the record header '
              f'(offset {offset}, file size {size})'), None
    length, length_crc = struct.unpack('<QI', header)
    if masked_crc32c(header[:8]) != length_crc:
      return (f'corrupt record header at offset {offset} (length checksum mismatch); '
              'the rest of the file cannot be read'), None
    end = offset + _HEADER_BYTES + length + _FOOTER_BYTES
    if end > size:
      return (f'truncated record: {length} data bytes announced at offset {offset} '
              f'but the file has only {size} bytes'), None
    return f'corrupt record data at offset {offset} (CRC32C mismatch)', end


def _tail_copy(path: str, offset: int) -> str:
  """Copies ``path[offset:]`` into a temporary file (TFRecordDataset cannot seek)."""
  fd, tmp = tempfile.mkstemp(suffix='.tfrecord')
  with os.fdopen(fd, 'wb') as out, tf.io.gfile.GFile(path, 'rb') as src:
    src.seek(offset)
    shutil.copyfileobj(src, out)
  return tmp


def read_records(path: str, *, skip_bad_records: bool = False,
                 on_skip: Optional[Callable[[RecordError], None]] = None
                 ) -> Iterator[tuple[int, bytes]]:
  """Yields ``(record_index, serialized_bytes)`` for every record of a TFRecord file.

  Args:
    path: an uncompressed TFRecord file (WOMD's format); local or any filesystem
      ``tf.io.gfile`` knows (gs://...).
    skip_bad_records: report a truncated or corrupt record through ``on_skip`` and go
      on with the next readable record instead of raising.
    on_skip: receives one :class:`RecordError` per skipped record (or per unreadable
      file tail).

  Raises:
    RecordError: ``field='record'``, naming the file and record index, for a truncated
      or corrupt record (unless ``skip_bad_records``).
  """
  index, tmp = 0, None
  try:
    while True:
      source = path if tmp is None else tmp
      try:
        for raw in tf.data.TFRecordDataset(source):
          yield index, raw.numpy()
          index += 1
        return
      except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as e:
        reason, next_offset = _diagnose(path, index)
        err = RecordError(f'{reason} [{type(e).__name__}]', field='record', file=path,
                          record_index=index)
      if not skip_bad_records:
        raise err
      if on_skip is not None:
        on_skip(err)
      if next_offset is None:
        return
      # Resume after the bad record: the records of the tail copy keep their indices.
      if tmp is not None:
        os.remove(tmp)
      index += 1
      tmp = _tail_copy(path, next_offset)
  finally:
    if tmp is not None and os.path.exists(tmp):
      os.remove(tmp)


class RecordIndex:
  """Random access to the records of TFRecord files, indexed once.

  Construction walks every file's length headers (12 bytes read per record, no data
  read or parsed) and keeps ``(file, offset, length)`` per record; :meth:`read` then
  seeks straight to a record and checks its CRC32C. This lets a training loop draw any
  subset of a large dataset repeatedly without re-reading the files.

  Args:
    files: TFRecord paths (local or any ``tf.io.gfile`` filesystem), in order; global
      record ``i`` counts across them.

  Raises:
    RecordError: a file whose framing is truncated or corrupt (names file and record).
  """

  def __init__(self, files: Iterable[str]):
    self.files = [str(f) for f in files]
    self._entries: list[tuple[int, int, int]] = []  # (file index, data offset, length)
    for file_index, path in enumerate(self.files):
      size = tf.io.gfile.stat(path).length
      with tf.io.gfile.GFile(path, 'rb') as f:
        offset, index = 0, 0
        while offset < size:
          header = f.read(_HEADER_BYTES)
          if len(header) < _HEADER_BYTES:
            raise RecordError(f'truncated record header at offset {offset} (file size '
                              f'{size})', field='record', file=path, record_index=index)
          length, length_crc = struct.unpack('<QI', header)
          if masked_crc32c(header[:8]) != length_crc:
            raise RecordError(f'corrupt record header at offset {offset} (length checksum '
                              'mismatch)', field='record', file=path, record_index=index)
          end = offset + _HEADER_BYTES + length + _FOOTER_BYTES
          if end > size:
            raise RecordError(f'truncated record: {length} data bytes announced at offset '
                              f'{offset} but the file has only {size} bytes',
                              field='record', file=path, record_index=index)
          self._entries.append((file_index, offset + _HEADER_BYTES, length))
          f.seek(end)
          offset, index = end, index + 1

  def __len__(self) -> int:
    return len(self._entries)

  def _check_index(self, index: int) -> None:
    if not 0 <= index < len(self._entries):
      raise IndexError(f'record {index} requested but the {len(self.files)} file(s) hold '
                       f'{len(self._entries)} records.')

  def locate(self, index: int) -> tuple[str, int]:
    """``(file, index within that file)`` of the global record ``index``: what an error
    about the record names."""
    self._check_index(index)
    file_index = self._entries[index][0]
    return self.files[file_index], sum(1 for e in self._entries[:index] if e[0] == file_index)

  def read(self, index: int) -> bytes:
    """The serialized record ``index`` (global over the files), CRC-checked."""
    self._check_index(index)
    file_index, offset, length = self._entries[index]
    path = self.files[file_index]
    with tf.io.gfile.GFile(path, 'rb') as f:
      f.seek(offset)
      data = f.read(length + _FOOTER_BYTES)
    (crc,) = struct.unpack('<I', data[length:])
    if masked_crc32c(data[:length]) != crc:
      raise RecordError(f'corrupt record data at offset {offset - _HEADER_BYTES} (CRC32C '
                        'mismatch)', field='record', file=path,
                        record_index=self.locate(index)[1])
    return data[:length]


def write_records(path: str, records: Iterable[bytes]) -> int:
  """Writes serialized records to an uncompressed TFRecord file; returns the count."""
  count = 0
  with tf.io.TFRecordWriter(str(path)) as writer:
    for record in records:
      writer.write(record)
      count += 1
  return count
