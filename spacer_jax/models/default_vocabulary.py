"""The default token vocabulary: built from generated scenes, cached, versioned.

Its recipe names the generator version (``DEFAULT_RECIPE``), so a new generator never
meets tokens clustered on old worlds. It lives here, above ``tokens`` and ``data``
(``tests/test_import_layers.py``): building it needs both the builder and the generator.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from spacer_jax.data.generator import GeneratorConfig, generate_scenario
from spacer_jax.data.generator.config import GENERATOR_VERSION
from spacer_jax.tokens.builder import (
  BuildConfig,
  build_vocabulary,
  describe_seeds,
  extract_segments,
  jsonable,
)
from spacer_jax.tokens.vocabulary import (
  DEFAULT_NUM_TOKENS,
  DEFAULT_STEPS_PER_TOKEN,
  FORMAT_VERSION,
  TokenVocabulary,
  VocabularyError,
  cache_dir,
  load_vocabulary,
  load_vocabulary_metadata,
  save_vocabulary,
)

# Builder recipe of the cached default vocabulary: the generator version it is built
# from plus the builder's own settings, so a new generator never meets an old cache.
# Bump the suffix to invalidate old caches for a builder change.
DEFAULT_RECIPE = f'{GENERATOR_VERSION}-mirror'

# -- default vocabulary ------------------------------------------------------------

# The default build: generator scenarios 0..63 (held-out evaluations use other seeds).
DEFAULT_BUILD_SEEDS = range(64)
# The map does not enter the build: a small roadgraph, every object logged all along.
DEFAULT_GENERATOR_KWARGS = {'num_objects': 128, 'num_roadgraph_points': 1000,
                            'log_off_map': True}


def build_vocabulary_from_generator(seeds: Sequence[int], generator_config: Any = None,
                                    config: BuildConfig = BuildConfig()
                                    ) -> tuple[TokenVocabulary, dict[str, Any]]:
  """Generates one scenario per seed and builds a vocabulary from their logs."""
  start = time.perf_counter()
  generator_config = generator_config or GeneratorConfig()
  seeds = [int(s) for s in seeds]
  segments = extract_segments((generate_scenario(s, generator_config) for s in seeds),
                              config.steps_per_token)
  source = {'kind': 'generator', 'seeds': describe_seeds(seeds),
            'generator_config': jsonable(dataclasses.asdict(generator_config))}
  vocab, metadata = build_vocabulary(segments, config, source)
  metadata['build_seconds'] = time.perf_counter() - start
  return vocab, metadata



def default_vocabulary_path(num_tokens: int = DEFAULT_NUM_TOKENS,
                            steps_per_token: int = DEFAULT_STEPS_PER_TOKEN) -> str:
  """Cache path of the default vocabulary for ``(K, S)``; the recipe is in the name."""
  name = f'vocab_{DEFAULT_RECIPE}_k{num_tokens}_s{steps_per_token}_v{FORMAT_VERSION}.npz'
  return os.path.join(cache_dir(), 'tokens', name)


def get_or_build_default_vocabulary(num_tokens: int = DEFAULT_NUM_TOKENS,
                                    steps_per_token: int = DEFAULT_STEPS_PER_TOKEN
                                    ) -> TokenVocabulary:
  """Loads the cached default vocabulary, building and caching it first if absent.

  The build is deterministic (generator seeds ``DEFAULT_BUILD_SEEDS``, builder seed 0;
  about 20 s of one CPU core at K = 200), so concurrent processes write identical files
  and the atomic rename keeps readers safe. A cache file that is unreadable, or whose
  recorded build config differs from today's defaults, is rebuilt.
  """
  config = BuildConfig(num_tokens=num_tokens, steps_per_token=steps_per_token)
  expected = json.loads(json.dumps(dataclasses.asdict(config)))
  path = default_vocabulary_path(num_tokens, steps_per_token)
  if os.path.exists(path):
    try:
      vocab = load_vocabulary(path)
      if load_vocabulary_metadata(path).get('build_config') == expected:
        return vocab
    except VocabularyError:
      pass  # A stale or corrupt cache is replaced below.
  vocab, metadata = build_vocabulary_from_generator(
      DEFAULT_BUILD_SEEDS, GeneratorConfig(**DEFAULT_GENERATOR_KWARGS), config)
  metadata['recipe'] = DEFAULT_RECIPE
  save_vocabulary(path, vocab, metadata)
  return vocab


__all__ = ['DEFAULT_BUILD_SEEDS', 'DEFAULT_GENERATOR_KWARGS', 'DEFAULT_RECIPE',
           'build_vocabulary_from_generator', 'default_vocabulary_path',
           'get_or_build_default_vocabulary']
