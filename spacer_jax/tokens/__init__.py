"""Motion tokens: vocabularies, tokenisation, token execution and the token environment.

Usage::

  from spacer_jax import tokens
  from spacer_jax.models.default_vocabulary import get_or_build_default_vocabulary
  from spacer_jax.tokens.tokenize import tokenize
  vocab = get_or_build_default_vocabulary()  # K = 200 tokens of 0.2 s, cached
  tok = tokenize(vocab, state.log_trajectory, state.object_metadata.object_types)
  env = tokens.TokenEnvironment(MultiAgentEnvironment(dynamics, EnvConfig()), vocab)
  state, metrics = env.step(state, token_ids)  # S = 2 simulator steps, metrics (..., S, N)

Modules: ``vocabulary`` (the struct, artifact files, the cache folder), ``builder``
(k-disk clustering of logged segments), ``tokenize`` (tokenise / execute / detokenise,
pure JAX), ``token_env`` (token dynamics over ``MultiAgentEnvironment``). The function
``tokenize`` is not re-exported here, so ``spacer_jax.tokens.tokenize`` stays the module.
"""

from spacer_jax.tokens.builder import (
    BuildConfig,
    Segments,
    build_vocabulary,
    extract_segments,
    kinematic_primitives,
)
from spacer_jax.tokens.token_env import TokenEnvironment
from spacer_jax.tokens.tokenize import (
    Tokenized,
    detokenize,
    error_by_type,
    execute_token,
    num_tokens_in,
)
from spacer_jax.tokens.vocabulary import (
    NUM_AGENT_TYPES,
    TYPE_NAMES,
    TokenVocabulary,
    VocabularyError,
    agent_type_index,
    load_vocabulary,
    load_vocabulary_metadata,
    save_vocabulary,
)

__all__ = [
    'NUM_AGENT_TYPES', 'TYPE_NAMES', 'BuildConfig', 'Segments', 'TokenEnvironment',
    'TokenVocabulary', 'Tokenized', 'VocabularyError', 'agent_type_index',
    'build_vocabulary',
    'detokenize', 'error_by_type', 'execute_token', 'extract_segments',
    'kinematic_primitives', 'load_vocabulary',
    'load_vocabulary_metadata', 'num_tokens_in', 'save_vocabulary',
]
