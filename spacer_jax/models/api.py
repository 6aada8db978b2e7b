"""The reference model's query API: inputs, one teacher-forced pass, step-by-step decode.

``reference_log_probs(model, params, inputs)`` is the in-graph query that SPACER's train
step calls inside its jit: one teacher-forced pass over an executed token history gives
``log p_ref`` of every agent's next token at every token step, ``(..., N, L, K)``.

Sequence convention (shared with ``spacer_jax.tokens``): position ``l`` of an agent holds
``token_ids[l]`` and the pose after it, ``token_poses[l + 1]``; the output at ``l`` is
the distribution of token ``l + 1``. With WOMD timing (S = 2 steps per token, start step
0) the policy's first action is token 5, scored by the output at position 4.

All functions take any leading batch shape ``(...)`` (``()`` for one scenario).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from spacer_jax.models import features as feat
from spacer_jax.models.config import ReferenceConfig
from spacer_jax.models.reference import (
  DecodeCache,
  ReferenceModel,
  empty_cache,
  position_valid,
)
from spacer_jax.sim.batching import map_leading_dims
from spacer_jax.sim.datatypes import INIT_STEPS, SimulatorState
from spacer_jax.tokens.vocabulary import agent_type_index

ModelLike = Union[ReferenceModel, ReferenceConfig]


@struct.dataclass
class ReferenceInputs:
  """Everything the reference model reads, for a scenario or a batch ``(...)``.

  Attributes:
    map_segments: ``MapSegments`` ``(..., M)`` (see ``features.map_segments``).
    agent_type: ``(..., N)`` int32 type index: 0 vehicle, 1 pedestrian, 2 cyclist.
    agent_size: ``(..., N, 2)`` float32 (length, width) in metres.
    agent_valid: ``(..., N)`` bool, the object slot is real.
    token_ids: ``(..., N, L)`` int32 token ids in ``[0, K)`` (anything where invalid).
    token_poses: ``(..., N, L + 1, 3)`` float32 (x, y, yaw) at token boundaries, world
      frame; boundary ``l`` is the pose before token ``l``.
    token_valid: ``(..., N, L)`` bool.
  """

  map_segments: feat.MapSegments
  agent_type: jax.Array
  agent_size: jax.Array
  agent_valid: jax.Array
  token_ids: jax.Array
  token_poses: jax.Array
  token_valid: jax.Array

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return tuple(self.agent_type.shape[:-1])

  @property
  def num_agents(self) -> int:
    return self.agent_type.shape[-1]

  @property
  def num_positions(self) -> int:
    return self.token_ids.shape[-1]

  def check(self) -> None:
    """Checks shapes and dtypes (static, so it also works under jit).

    Raises:
      ValueError: naming the field, the expected shape or dtype and what it holds.
    """
    b, n = self.batch_shape, self.num_agents
    length = self.num_positions
    m = self.map_segments.valid.shape[-1]
    expect = {
        'agent_type': ((*b, n), 'int'),
        'agent_size': ((*b, n, 2), 'float'),
        'agent_valid': ((*b, n), 'bool'),
        'token_ids': ((*b, n, length), 'int'),
        'token_poses': ((*b, n, length + 1, 3), 'float'),
        'token_valid': ((*b, n, length), 'bool'),
        'map_segments.valid': ((*b, m), 'bool'),
        'map_segments.xy': ((*b, m, 2), 'float'),
        'map_segments.yaw': ((*b, m), 'float'),
        'map_segments.types': ((*b, m), 'int'),
    }
    for name, (shape, kind) in expect.items():
      value = self
      for part in name.split('.'):
        value = getattr(value, part)
      if tuple(value.shape) != shape:
        raise ValueError(f'ReferenceInputs.{name} has shape {tuple(value.shape)}, '
                         f'expected {shape} (batch {b}, N={n}, L={length}, M={m})')
      if not _is_kind(value.dtype, kind):
        raise ValueError(f'ReferenceInputs.{name} has dtype {value.dtype}, expected {kind}')
    if length < 1:
      raise ValueError('ReferenceInputs.token_ids needs at least one position (L >= 1)')


def _is_kind(dtype: Any, kind: str) -> bool:
  dtype = np.dtype(dtype)
  if kind == 'bool':
    return dtype == np.bool_
  if kind == 'int':
    return np.issubdtype(dtype, np.integer)
  return np.issubdtype(dtype, np.floating)


def _at_step(values: jax.Array, step: jax.Array) -> jax.Array:
  """``values (..., N, T)`` at per-scenario ``step (...)`` -> ``(..., N)``."""
  index = jnp.broadcast_to(step[..., None, None], (*values.shape[:-1], 1))
  return jnp.take_along_axis(values, index, axis=-1)[..., 0]


def scene_center(state: SimulatorState) -> jax.Array:
  """``(..., 2)``: the SDC's simulated position at ``state.timestep``.

  Falls back to the mean of the valid objects when the SDC is invalid there, and to the
  origin when no object is.
  """
  traj = state.sim_trajectory
  x, y = _at_step(traj.x, state.timestep), _at_step(traj.y, state.timestep)
  valid = _at_step(traj.valid, state.timestep) & state.object_metadata.is_valid
  sdc = state.object_metadata.is_sdc & valid
  xy = jnp.stack([x, y], axis=-1)
  weights = jnp.where(jnp.any(sdc, axis=-1, keepdims=True), sdc, valid).astype(jnp.float32)
  total = jnp.sum(weights, axis=-1, keepdims=True)
  return jnp.sum(xy * weights[..., None], axis=-2) / jnp.maximum(total, 1.0)


def map_anchors(state: SimulatorState) -> tuple[jax.Array, jax.Array]:
  """Where the map must be kept: every object's logged position at the current step.

  The current step is WOSAC's (``INIT_STEPS - 1``, the last step a policy is given),
  clipped to the log's length; it does not depend on ``state.timestep``, so the
  teacher-forced pass, the rollout and SPACER's anchor pass select the same segments.

  Returns:
    ``(xy (..., N, 2), valid (..., N))``, metres.
  """
  log = state.log_trajectory
  step = min(INIT_STEPS - 1, log.num_timesteps - 1)
  xy = jnp.stack([log.x[..., step], log.y[..., step]], axis=-1)
  valid = log.valid[..., step] & state.object_metadata.is_valid
  return xy, valid


def build_reference_inputs(state: SimulatorState, token_ids: jax.Array,
                           token_poses: jax.Array, token_valid: jax.Array, *,
                           config: ReferenceConfig = ReferenceConfig(),
                           center_xy: Optional[jax.Array] = None) -> ReferenceInputs:
  """Assembles ``ReferenceInputs`` from a simulator state and a token history.

  Jittable. Map segments come from ``state.roadgraph_points``: ``config``'s
  ``num_map_segments`` nearest to any object valid at the current step
  (:func:`map_anchors`), or to ``center_xy`` when given; with ``num_map_segments`` at
  least the roadgraph's segment count (the recipes' setting) the whole map is kept, so
  every agent attends to the map around its own pose wherever it drives. Agent type
  index, size and validity come from the state's metadata and log.

  Args:
    state: ``SimulatorState`` with batch shape ``(...)`` and N objects.
    token_ids: ``(..., N, L)`` int32 (``Tokenized.token_ids``, logged or simulated).
    token_poses: ``(..., N, L + 1, 3)`` (``Tokenized.poses``).
    token_valid: ``(..., N, L)`` bool.
    config: supplies ``num_map_segments`` and ``segment_step``.
    center_xy: optional ``(..., 2)`` map centre, metres (instead of the anchors).
  """
  batch, n = state.shape, state.num_objects
  if token_ids.ndim != len(batch) + 2 or token_ids.shape[:-1] != (*batch, n):
    raise ValueError(f'token_ids has shape {token_ids.shape}, expected {(*batch, n)} + (L,) '
                     f'for a state with batch shape {batch} and {n} objects')
  length = token_ids.shape[-1]
  if token_poses.shape != (*batch, n, length + 1, 3):
    raise ValueError(f'token_poses has shape {token_poses.shape}, expected '
                     f'{(*batch, n, length + 1, 3)} (L + 1 boundary poses)')
  if token_valid.shape != token_ids.shape:
    raise ValueError(f'token_valid has shape {token_valid.shape}, expected '
                     f'{token_ids.shape} like token_ids')
  if center_xy is None:
    anchor_xy, anchor_valid = map_anchors(state)
  else:
    anchor_xy = jnp.asarray(center_xy)[..., None, :]
    anchor_valid = jnp.ones(anchor_xy.shape[:-1], bool)
  segments = feat.map_segments(state.roadgraph_points, anchor_xy, config.num_map_segments,
                               config.segment_step, anchor_valid)
  meta, log = state.object_metadata, state.log_trajectory
  size = jnp.stack([jnp.max(jnp.where(log.valid, log.length, 0.0), axis=-1),
                    jnp.max(jnp.where(log.valid, log.width, 0.0), axis=-1)], axis=-1)
  inputs = ReferenceInputs(
      map_segments=segments,
      agent_type=agent_type_index(meta.object_types).astype(jnp.int32),
      agent_size=size.astype(jnp.float32),
      agent_valid=meta.is_valid,
      token_ids=jnp.asarray(token_ids, jnp.int32),
      token_poses=jnp.asarray(token_poses, jnp.float32),
      token_valid=jnp.asarray(token_valid, bool))
  inputs.check()
  return inputs


# ----------------------------------------------------------------- model helpers
def as_model(model_or_config: ModelLike) -> ReferenceModel:
  """A ``ReferenceModel`` from a model or its config."""
  if isinstance(model_or_config, ReferenceModel):
    return model_or_config
  if isinstance(model_or_config, ReferenceConfig):
    return ReferenceModel(model_or_config)
  raise TypeError(f'expected a ReferenceModel or ReferenceConfig, got '
                  f'{type(model_or_config).__name__}')


def _first_example(tree: Any, depth: int) -> Any:
  return jax.tree.map(lambda a: a[(0,) * depth], tree)


def init_reference(config: ReferenceConfig, rng: jax.Array,
                   example_inputs: ReferenceInputs) -> dict:
  """Initial variables ``{'params': ...}`` from example inputs of any batch shape.

  Wrap in ``jax.eval_shape`` to get parameter shapes without computing them.
  """
  example_inputs.check()
  one = _first_example(example_inputs, len(example_inputs.batch_shape))
  traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((rng, one)))
  if jax.default_backend() == 'cpu' and not traced:
    try:
      return _compiled_init(config, optimise=False)(rng, one)
    except ValueError:  # inside another trace (eval_shape, jit): no compiler options
      pass
  return _compiled_init(config, optimise=True)(rng, one)


@functools.lru_cache(maxsize=16)
def _compiled_init(config: ReferenceConfig, optimise: bool) -> Callable:
  # Jitted, as op-by-op initialisation is many times slower; cached per config so that
  # repeated initialisations compile once. The program runs once, so on CPU it is
  # compiled without backend optimisation (halves the compile time).
  options = None if optimise else {'xla_backend_optimization_level': 0}
  return jax.jit(ReferenceModel(config).init, compiler_options=options)


def count_params(params: Any) -> int:
  """Number of scalars in a parameter pytree (arrays or ``jax.ShapeDtypeStruct``)."""
  return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params)))


def reference_log_probs(model_or_config: ModelLike, params: Any, inputs: ReferenceInputs,
                        *, deterministic: bool = True,
                        rng: Optional[jax.Array] = None) -> jax.Array:
  """``log p_ref`` of every agent's next token at every position, one pass.

  Jittable (close over the model or pass it as a static argument).

  Args:
    model_or_config: the model or its config.
    params: variables from ``init_reference`` (or a checkpoint).
    inputs: ``ReferenceInputs`` with batch shape ``(...)``.
    deterministic: False turns dropout on (needs ``rng``).
    rng: dropout key, split over the batch.

  Returns:
    ``(..., N, L, K)`` float32 log-probabilities; output ``l`` is the distribution of
    token ``l + 1``. Invalid positions (``position_valid`` False) hold the uniform
    ``-log K`` so every row stays normalised.
  """
  model = as_model(model_or_config)
  inputs.check()
  batch = inputs.batch_shape
  if not deterministic and rng is None:
    raise ValueError('reference_log_probs needs rng when deterministic=False')
  with jax.named_scope('reference'):
    if deterministic:
      fn = lambda x: model.apply(params, x, deterministic=True)
      logits = map_leading_dims(fn, len(batch))(inputs)
    else:
      keys = jax.random.split(rng, math.prod(batch))
      keys = keys.reshape(*batch, *keys.shape[1:])
      fn = lambda x, k: model.apply(params, x, deterministic=False, rngs={'dropout': k})
      logits = map_leading_dims(fn, len(batch))(inputs, keys)
    return _normalise(logits, position_valid(inputs))


def _normalise(logits: jax.Array, valid: jax.Array) -> jax.Array:
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  uniform = -jnp.log(jnp.float32(logits.shape[-1]))
  return jnp.where(valid[..., None], log_probs, uniform)


# --------------------------------------------------------- step-by-step decoding
@struct.dataclass
class DecodeState:
  """Step-by-step decoding state, batch shape ``(...)``.

  Attributes:
    map_embedding: ``(..., M, H)`` encoded map.
    map_segments: ``(..., M)``.
    agent_type, agent_size, agent_valid: ``(..., N)``, ``(..., N, 2)``, ``(..., N)``.
    cache: ``DecodeCache`` with batch shape ``(...)``.
  """

  map_embedding: jax.Array
  map_segments: feat.MapSegments
  agent_type: jax.Array
  agent_size: jax.Array
  agent_valid: jax.Array
  cache: DecodeCache


def init_decode(model_or_config: ModelLike, params: Any, inputs: ReferenceInputs,
                max_len: Optional[int] = None) -> DecodeState:
  """Encodes the map and allocates an empty cache of ``max_len`` positions.

  Only the map and agent fields of ``inputs`` are read; ``max_len`` defaults to L.
  """
  model = as_model(model_or_config)
  inputs.check()
  depth = len(inputs.batch_shape)
  max_len = inputs.num_positions if max_len is None else max_len
  encode = lambda seg: model.apply(params, seg, method=ReferenceModel.encode_map)
  map_emb = map_leading_dims(encode, depth)(inputs.map_segments)
  cache = empty_cache(model.config, inputs.num_agents, max_len)
  cache = jax.tree.map(lambda a: jnp.broadcast_to(a, (*inputs.batch_shape, *a.shape)),
                       cache)
  return DecodeState(map_emb, inputs.map_segments, inputs.agent_type, inputs.agent_size,
                     inputs.agent_valid, cache)


def decode_step(model_or_config: ModelLike, params: Any, state: DecodeState,
                position: jax.Array, token_ids: jax.Array, start_pose: jax.Array,
                end_pose: jax.Array, valid: jax.Array) -> tuple[jax.Array, DecodeState]:
  """Adds position ``position`` and returns the next token's log-probs.

  Positions must be decoded in order 0, 1, 2, ... (earlier ones come from the cache).

  Args:
    state: from ``init_decode`` or the previous ``decode_step``.
    position: int scalar, shared by the batch.
    token_ids: ``(..., N)`` int32 token at ``position``.
    start_pose, end_pose: ``(..., N, 3)`` poses before / after it.
    valid: ``(..., N)`` bool.

  Returns:
    ``(log_probs (..., N, K), state)``; invalid agents get the uniform ``-log K``.
  """
  model = as_model(model_or_config)
  position = jnp.asarray(position, jnp.int32)
  valid = valid & state.agent_valid

  def one(s: DecodeState, ids, start, end, ok):
    return model.apply(params, s.map_embedding, s.map_segments, s.agent_type, s.agent_size,
                       s.cache, position, ids, start, end, ok,
                       method=ReferenceModel.decode_step)

  depth = len(state.agent_type.shape) - 1
  with jax.named_scope('reference_decode'):
    logits, cache = map_leading_dims(one, depth)(state, token_ids, start_pose, end_pose, valid)
  return _normalise(logits, valid), state.replace(cache=cache)


def next_token_log_probs_incremental(model_or_config: ModelLike, params: Any,
                                     inputs: ReferenceInputs) -> jax.Array:
  """The same ``(..., N, L, K)`` as ``reference_log_probs``, one position at a time.

  Scans ``decode_step`` over the positions; each step sees only the cache of earlier
  positions, so agreement with the teacher-forced pass checks its causal masking.
  """
  state = init_decode(model_or_config, params, inputs)
  valid = position_valid(inputs)
  move = lambda a: jnp.moveaxis(a, -2 if a.ndim == valid.ndim + 1 else -1, 0)
  per_step = (move(inputs.token_ids), move(inputs.token_poses[..., :-1, :]),
              move(inputs.token_poses[..., 1:, :]), move(valid))

  def body(s, xs):
    position, (ids, start, end, ok) = xs
    log_probs, s = decode_step(model_or_config, params, s, position, ids, start, end, ok)
    return s, log_probs

  positions = jnp.arange(inputs.num_positions, dtype=jnp.int32)
  _, out = jax.lax.scan(body, state, (positions, per_step))
  return jnp.moveaxis(out, 0, -2)


def parameter_counts() -> dict[str, int]:
  """Parameter count of every named size (shapes only, nothing is computed).

  ``python -c "from spacer_jax.models import parameter_counts; print(parameter_counts())"``
  """
  from spacer_jax.models.config import SIZES, reference_config
  f32, i32 = jnp.float32, jnp.int32
  counts = {}
  for size in SIZES:
    config = reference_config(size)
    points = config.segment_step + 1
    seg = feat.MapSegments(
        xy=jnp.zeros((1, 2), f32), yaw=jnp.zeros((1,), f32), start=jnp.zeros((1, 2), f32),
        end=jnp.zeros((1, 2), f32), length=jnp.zeros((1,), f32),
        types=jnp.zeros((1,), i32), points=jnp.zeros((1, points, 2), f32),
        points_valid=jnp.zeros((1, points), bool), valid=jnp.zeros((1,), bool))
    example = ReferenceInputs(seg, jnp.zeros((2,), i32), jnp.zeros((2, 2), f32),
                              jnp.ones((2,), bool), jnp.zeros((2, 1), i32),
                              jnp.zeros((2, 2, 3), f32), jnp.ones((2, 1), bool))
    init = functools.partial(init_reference, config)
    counts[size] = count_params(jax.eval_shape(init, jax.random.key(0), example))
  return counts
