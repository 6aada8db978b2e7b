"""Motion-token vocabularies: the struct, the saved artifact and the cached default.

A token is a short motion of ``S`` simulator steps (0.1 s each) expressed in the agent's
frame at the token's start: the start pose is the origin, heading +x. Each agent type
(vehicle, pedestrian, cyclist) has its own ``K`` tokens; token 0 of every type is
standing still. :mod:`spacer_jax.tokens.builder` builds vocabularies by k-disk
clustering of logged motion segments.

Artifacts are one ``.npz`` (arrays plus the metadata as JSON, written atomically) and a
human-readable ``.json`` copy of the metadata next to it; the ``.npz`` is authoritative.
The default vocabulary is not checked in:
``spacer_jax.models.default_vocabulary.get_or_build_default_vocabulary`` builds it
deterministically from the generator into :func:`cache_dir` on first use (it lives
above this package because it needs the generator).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from spacer_jax.sim import geometry

NUM_AGENT_TYPES = 3
TYPE_NAMES = ('vehicle', 'pedestrian', 'cyclist')
FORMAT_VERSION = 1
DEFAULT_NUM_TOKENS = 200
DEFAULT_STEPS_PER_TOKEN = 2
# Box (length, width) per type when the data holds no agent of that type, metres.
DEFAULT_BOX_SIZES = ((4.5, 2.0), (0.8, 0.8), (1.8, 0.8))
CACHE_ENV_VAR = 'SPACER_JAX_CACHE'


class VocabularyError(ValueError):
  """A vocabulary file or array that does not match the expected format."""


def agent_type_index(object_types: jax.Array) -> jax.Array:
  """Vocabulary index per object: 0 vehicle, 1 pedestrian, 2 cyclist (int32, same shape).

  WOMD types UNSET (0) and OTHER (4) map to the vehicle vocabulary.
  """
  types = jnp.asarray(object_types, jnp.int32)
  return jnp.where(types > 3, 0, jnp.clip(types - 1, 0, 2)).astype(jnp.int32)


@struct.dataclass
class TokenVocabulary:
  """Per-type motion tokens.

  Attributes:
    poses: ``(3, K, S, 3)`` float32, (x m, y m, yaw rad) of sub-steps ``s = 1..S`` in
      the agent's frame at the token's start. ``poses[:, 0] == 0`` (standing still).
    corners: ``(3, K, S, 4, 2)`` float32, box corners of those poses with the type's
      ``box_sizes`` (front-right first, counter-clockwise).
    box_sizes: ``(3, 2)`` float32, (length, width) per type in metres.
    num_tokens: ``K`` (static).
    steps_per_token: ``S`` simulator steps per token (static).
  """

  poses: jax.Array
  corners: jax.Array
  box_sizes: jax.Array
  num_tokens: int = struct.field(pytree_node=False)
  steps_per_token: int = struct.field(pytree_node=False)

  @classmethod
  def from_poses(cls, poses: Any, box_sizes: Any) -> TokenVocabulary:
    """Builds a vocabulary from ``poses (3, K, S, 3)`` and ``box_sizes (3, 2)``."""
    poses = np.asarray(poses, np.float32)
    box_sizes = np.asarray(box_sizes, np.float32)
    if poses.ndim != 4 or poses.shape[0] != NUM_AGENT_TYPES or poses.shape[-1] != 3:
      raise VocabularyError(f'TokenVocabulary.poses has shape {poses.shape}, expected '
                            f'({NUM_AGENT_TYPES}, K, S, 3).')
    if box_sizes.shape != (NUM_AGENT_TYPES, 2):
      raise VocabularyError(f'TokenVocabulary.box_sizes has shape {box_sizes.shape}, '
                            f'expected ({NUM_AGENT_TYPES}, 2).')
    corners = geometry.box_corners(
        jnp.asarray(poses[..., 0]), jnp.asarray(poses[..., 1]),
        jnp.asarray(box_sizes[:, None, None, 0]), jnp.asarray(box_sizes[:, None, None, 1]),
        jnp.asarray(poses[..., 2]))
    return cls(poses=jnp.asarray(poses), corners=jnp.asarray(corners, jnp.float32),
               box_sizes=jnp.asarray(box_sizes), num_tokens=poses.shape[1],
               steps_per_token=poses.shape[2])

  def validate(self) -> None:
    """Checks shapes, finiteness and the standing-still token 0.

    Raises:
      VocabularyError: naming the field.
    """
    k, s = self.num_tokens, self.steps_per_token
    expected = {'poses': (NUM_AGENT_TYPES, k, s, 3), 'corners': (NUM_AGENT_TYPES, k, s, 4, 2),
                'box_sizes': (NUM_AGENT_TYPES, 2)}
    for name, shape in expected.items():
      value = np.asarray(getattr(self, name))
      if value.shape != shape:
        raise VocabularyError(f'TokenVocabulary.{name} has shape {value.shape}, expected '
                              f'{shape} (K={k}, S={s}).')
      if not np.all(np.isfinite(value)):
        raise VocabularyError(f'TokenVocabulary.{name} holds non-finite values.')
    if np.any(np.asarray(self.poses)[:, 0] != 0):
      raise VocabularyError('TokenVocabulary token 0 must be standing still (zero poses).')
    if np.any(np.asarray(self.box_sizes) <= 0):
      raise VocabularyError('TokenVocabulary.box_sizes must be positive.')


# -- artifact ----------------------------------------------------------------------


def save_vocabulary(path: str, vocab: TokenVocabulary, metadata: dict[str, Any]) -> None:
  """Writes ``path`` (.npz with arrays + metadata JSON) and ``path + '.json'``, atomically.

  Each file is written to a temporary file in the same directory and renamed, so a
  reader never sees a partial file, even with concurrent builders.
  """
  vocab.validate()
  metadata = {**json.loads(json.dumps(metadata, default=str)), 'format_version': FORMAT_VERSION,
              'num_tokens': vocab.num_tokens, 'steps_per_token': vocab.steps_per_token}
  text = json.dumps(metadata, indent=1, sort_keys=True)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)

  def write(target: str, writer) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp_vocab_')
    try:
      with os.fdopen(fd, 'wb') as f:
        writer(f)
      os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is meant to be shared.
      os.replace(tmp, target)
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise

  write(path, lambda f: np.savez(
      f, poses=np.asarray(vocab.poses), corners=np.asarray(vocab.corners),
      box_sizes=np.asarray(vocab.box_sizes), metadata_json=np.asarray(text)))
  write(path + '.json', lambda f: f.write(text.encode()))


def _read(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  if not os.path.exists(path):
    raise FileNotFoundError(f'vocabulary file {path!r} does not exist.')
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
  except Exception as e:  # zip/npy errors vary by corruption; report them uniformly.
    raise VocabularyError(f'vocabulary file {path!r} is not a readable .npz ({e}).') from e
  missing = {'poses', 'corners', 'box_sizes', 'metadata_json'} - set(arrays)
  if missing:
    raise VocabularyError(f'vocabulary file {path!r} lacks arrays {sorted(missing)}.')
  try:
    metadata = json.loads(str(arrays.pop('metadata_json')))
  except json.JSONDecodeError as e:
    raise VocabularyError(f'vocabulary file {path!r} has malformed metadata ({e}).') from e
  version = metadata.get('format_version')
  if version != FORMAT_VERSION:
    raise VocabularyError(f'vocabulary file {path!r} has format_version {version!r}, '
                          f'expected {FORMAT_VERSION}; rebuild it.')
  return arrays, metadata


def load_vocabulary_metadata(path: str) -> dict[str, Any]:
  """The metadata dict stored in a vocabulary ``.npz``."""
  return _read(path)[1]


def load_vocabulary(path: str) -> TokenVocabulary:
  """Reads and validates a vocabulary written by :func:`save_vocabulary`.

  Raises:
    FileNotFoundError: no such file.
    VocabularyError: unreadable file, wrong format version, or arrays whose shapes
      disagree with the metadata's K and S.
  """
  arrays, metadata = _read(path)
  k, s = metadata.get('num_tokens'), metadata.get('steps_per_token')
  if not isinstance(k, int) or not isinstance(s, int):
    raise VocabularyError(f'vocabulary file {path!r} metadata lacks integer num_tokens / '
                          'steps_per_token.')
  vocab = TokenVocabulary(poses=jnp.asarray(arrays['poses'], jnp.float32),
                          corners=jnp.asarray(arrays['corners'], jnp.float32),
                          box_sizes=jnp.asarray(arrays['box_sizes'], jnp.float32),
                          num_tokens=k, steps_per_token=s)
  try:
    vocab.validate()
  except VocabularyError as e:
    raise VocabularyError(f'vocabulary file {path!r}: {e}') from e
  return vocab


# -- cache ---------------------------------------------------------------------------

def cache_dir() -> str:
  """``$SPACER_JAX_CACHE`` or ``~/.cache/spacer_jax``."""
  return os.environ.get(CACHE_ENV_VAR) or os.path.join(
      os.path.expanduser('~'), '.cache', 'spacer_jax')
