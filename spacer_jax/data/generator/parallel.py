"""Scenario generation on several CPU cores, results in seed order.

Usage::

  from spacer_jax.data.generator import GeneratorConfig
  from spacer_jax.data.generator.parallel import generate_parallel, tf_example_bytes

  for seed, state in generate_parallel(range(1000), GeneratorConfig(num_objects=64)):
    ...                                       # SimulatorState, as generate_scenario
  for seed, record in generate_parallel(range(1000), num_workers=2,
                                        map_fn=tf_example_bytes):
    ...                                       # serialised WOMD tf.Example

Workers are started with the 'spawn' (or 'forkserver') method: JAX's runtime threads do
not survive a fork. Each worker runs ``generate_scenario`` and then ``map_fn``; only
numpy arrays and bytes travel back (a state is sent as numpy leaves and put back on the
default device here). Workers keep JAX on the CPU, so they never claim accelerator
memory. At most ``prefetch`` scenarios per worker are in flight, so ``seeds`` may be an
endless iterator.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import numpy as np

from spacer_jax.data.generator.config import GeneratorConfig
from spacer_jax.data.generator.scenario import generate_scenario
from spacer_jax.sim.datatypes import SimulatorState

START_METHODS = ('spawn', 'forkserver')

# Per-worker settings, set once by the pool initializer.
_CONFIG: GeneratorConfig | None = None
_MAP_FN: Callable[[SimulatorState], Any] | None = None


def tf_example_bytes(state: SimulatorState) -> bytes:
  """A state's log as a serialised WOMD ``tf.train.Example`` (a ready ``map_fn``).

  Imports TensorFlow on first use (in the worker that calls it).
  """
  from spacer_jax.data.womd import state_to_example
  return state_to_example(state).SerializeToString()


def _to_host(tree: Any) -> Any:
  """JAX arrays in ``tree`` -> numpy arrays (what crosses the process boundary)."""
  return jax.tree_util.tree_map(lambda v: np.asarray(v) if isinstance(v, jax.Array) else v,
                                tree)


def _init_worker(config: GeneratorConfig, map_fn: Callable | None) -> None:
  global _CONFIG, _MAP_FN
  # Generation is host work: keep the worker's JAX off any accelerator.
  jax.config.update('jax_platforms', 'cpu')
  _CONFIG, _MAP_FN = config, map_fn


def _work(seed: int) -> Any:
  state = generate_scenario(seed, _CONFIG)
  return _to_host(state if _MAP_FN is None else _MAP_FN(state))


def generate_parallel(seeds: Iterable[int], config: GeneratorConfig = GeneratorConfig(),
                      num_workers: int | None = None,
                      map_fn: Callable[[SimulatorState], Any] | None = None,
                      start_method: str = 'spawn', prefetch: int = 4
                      ) -> Iterator[tuple[int, Any]]:
  """Generates one scenario per seed on ``num_workers`` processes.

  Args:
    seeds: scenario seeds (any iterable of ints, possibly endless).
    config: generator settings, the same for every seed.
    num_workers: worker processes (default: the CPU count). 1 runs in this process,
      without a pool.
    map_fn: optional picklable top-level function applied to each state in the worker,
      e.g. :func:`tf_example_bytes`; its result is what is yielded.
    start_method: 'spawn' or 'forkserver' (never 'fork': JAX is not fork-safe).
    prefetch: scenarios in flight per worker.

  Yields:
    ``(seed, result)`` in the order of ``seeds``; ``result`` is the unbatched
    ``SimulatorState`` (JAX arrays on the default device), or ``map_fn(state)``.
    Identical to ``generate_scenario(seed, config)`` for any number of workers.

  Raises:
    ValueError: (at the call, before any work) for a bad ``num_workers``, ``prefetch``
      or ``start_method``, or a ``map_fn`` that cannot be pickled.
  """
  num_workers = (os.cpu_count() or 1) if num_workers is None else num_workers
  if not isinstance(num_workers, int) or num_workers < 1:
    raise ValueError(f'num_workers must be a positive int, got {num_workers!r}.')
  if prefetch < 1:
    raise ValueError(f'prefetch must be >= 1, got {prefetch}.')
  if start_method not in START_METHODS:
    raise ValueError(f'start_method must be one of {START_METHODS} (JAX is not fork-safe),'
                     f' got {start_method!r}.')
  if num_workers == 1:
    return _serial(seeds, config, map_fn)
  if map_fn is not None:
    try:
      pickle.dumps(map_fn)
    except Exception as e:
      raise ValueError(f'map_fn must be a picklable top-level function, got {map_fn!r}: '
                       f'{e}') from e
  return _pooled(seeds, config, num_workers, map_fn, start_method, prefetch)


def _pooled(seeds: Iterable[int], config: GeneratorConfig, num_workers: int,
            map_fn: Callable[[SimulatorState], Any] | None, start_method: str,
            prefetch: int) -> Iterator[tuple[int, Any]]:
  ctx = mp.get_context(start_method)
  # Leaving the block (exhausted, closed early or failed) terminates the workers.
  with ctx.Pool(num_workers, initializer=_init_worker, initargs=(config, map_fn)) as pool:
    it = iter(seeds)
    pending: deque = deque()

    def submit() -> None:
      for seed in it:
        pending.append((int(seed), pool.apply_async(_work, (int(seed),))))
        return

    for _ in range(num_workers * prefetch):
      submit()
    while pending:
      seed, result = pending.popleft()
      out = result.get()
      submit()
      yield seed, (jax.device_put(out) if map_fn is None else out)


def _serial(seeds: Iterable[int], config: GeneratorConfig,
            map_fn: Callable[[SimulatorState], Any] | None) -> Iterator[tuple[int, Any]]:
  for seed in seeds:
    state = generate_scenario(int(seed), config)
    yield int(seed), (state if map_fn is None else map_fn(state))

