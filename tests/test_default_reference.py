"""The packaged default reference: it loads, matches today's recipes, and uses the map."""

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.data.generator import GeneratorConfig, generate_scenario
from spacer_jax.models import default, default_vocabulary
from spacer_jax.models import train as train_lib
from spacer_jax.models.api import reference_log_probs
from spacer_jax.models.checkpoint import load_reference as load_reference_artifact
from spacer_jax.models.losses import next_token_loss
from spacer_jax.models.reference import position_valid
from spacer_jax.sim.builders import stack_states
from spacer_jax.tokens import builder, vocabulary

SHIPPED = default.shipped_reference_info()
needs_shipped = pytest.mark.skipif(SHIPPED is None, reason='no reference is packaged in '
                                   f'{default.SHIPPED_DIR}')
# Held-out seeds: neither the vocabulary (0..63) nor the reference (0..255) saw them, and
# they are not the seeds the decoding was tuned on (10_000_000 + i).
HELD_OUT = range(30_000_000, 30_000_004)


@needs_shipped
def test_shipped_reference_matches_todays_recipes():
  assert SHIPPED['vocabulary_recipe'] == default_vocabulary.DEFAULT_RECIPE, (
      'the packaged reference was trained on another vocabulary recipe: retrain it and '
      'run experiments.ship_reference')
  assert SHIPPED['reference_recipe'] == default.DEFAULT_REFERENCE_RECIPE
  for key in ('command', 'commit', 'data', 'eval', 'num_params'):
    assert SHIPPED.get(key), key
  path = default.shipped_default_reference(SHIPPED['num_tokens'])
  assert path is not None and default.get_or_train_default_reference(
      SHIPPED['num_tokens']) == path
  ref = load_reference_artifact(path)
  assert ref.config.num_tokens == SHIPPED['num_tokens']
  # Its vocabulary is the one today's default build makes (same recipe and settings).
  meta = vocabulary.load_vocabulary_metadata(ref.vocabulary_path)
  expected = builder.BuildConfig(num_tokens=ref.config.num_tokens,
                                 steps_per_token=meta['steps_per_token'])
  assert meta['build_config'] == json.loads(json.dumps(dataclasses.asdict(expected)))
  assert os.path.getsize(os.path.join(default.SHIPPED_DIR, 'vocabulary.npz')) < 5e6


def test_shipped_reference_is_ignored_on_another_recipe(tmp_path, monkeypatch):
  (tmp_path / default.SHIP_FILE).write_text(
      '{"vocabulary_recipe": "generator-v0", "reference_recipe": "x", "num_tokens": 200}')
  assert default.shipped_default_reference(200, directory=str(tmp_path)) is None
  assert default.shipped_default_reference(200, directory=str(tmp_path / 'none')) is None


@pytest.fixture(scope='module')
def held_out_inputs():
  ref = load_reference_artifact(default.shipped_default_reference(SHIPPED['num_tokens']))
  vocab = vocabulary.load_vocabulary(ref.vocabulary_path)
  data = SHIPPED['data']
  gen = GeneratorConfig(num_objects=data['num_objects'],
                        num_roadgraph_points=data['num_roadgraph_points'])
  scenes = stack_states([generate_scenario(s, gen) for s in HELD_OUT])
  inputs = jax.jit(train_lib.make_inputs, static_argnums=2)(vocab, scenes, ref.config)
  return ref, vocab, scenes, inputs


def _nll(ref, inputs):
  log_probs = reference_log_probs(ref.config, ref.params, inputs)
  return next_token_loss(log_probs, inputs.token_ids, position_valid(inputs),
                         label_smoothing=0.0)[1]['nll']


@needs_shipped
def test_default_reference_needs_its_map(held_out_inputs):
  ref, _, _, inputs = held_out_inputs
  nll = jax.jit(functools.partial(_nll, ref))
  blind = inputs.replace(map_segments=inputs.map_segments.replace(
      valid=jnp.zeros_like(inputs.map_segments.valid)))
  with_map, without = float(nll(inputs)), float(nll(blind))
  assert without >= with_map + 0.1, (with_map, without)


@needs_shipped
def test_moving_the_road_moves_the_agents_distribution(held_out_inputs):
  ref, vocab, _, inputs = held_out_inputs
  probs = jax.jit(lambda x: reference_log_probs(ref.config, ref.params, x))
  seg = inputs.map_segments
  # The road 2 m to the +y side of where it was (every segment, in the world frame).
  shift = jnp.array([0.0, 2.0])
  moved = inputs.replace(map_segments=seg.replace(
      xy=seg.xy + shift, start=seg.start + shift, end=seg.end + shift))
  base, after = probs(inputs), probs(moved)
  poses = np.asarray(inputs.token_poses)
  speed = np.linalg.norm(poses[..., 1:, :2] - poses[..., :-1, :2], axis=-1) / 0.2
  moving = (np.asarray(position_valid(inputs)) & (speed > 3.0)
            & (np.asarray(inputs.agent_type)[..., None] == 0))  # Moving vehicles.
  assert moving.sum() > 500
  kl = np.asarray(jnp.sum(jnp.exp(base) * (base - after), axis=-1))
  # Measured on the packaged reference: 0.0071 nats (0.0021 for a 1 m shift).
  assert float(kl[moving].mean()) > 0.003, float(kl[moving].mean())
  # And toward the road: the expected lateral motion of the next token, in world +y,
  # grows for most moving vehicles (measured 63% of them).
  lateral = np.asarray(vocab.poses)[0, :, -1, 1]  # Vehicle tokens' end offset, left +.
  toward = (np.asarray(jnp.sum((jnp.exp(after) - jnp.exp(base)) * lateral, axis=-1))
            * np.cos(poses[..., 1:, 2]))
  assert float((toward[moving] > 0).mean()) > 0.55, float((toward[moving] > 0).mean())


@needs_shipped
def test_shipped_vocabulary_is_what_the_default_build_makes_today(tmp_path, monkeypatch):
  # A fresh machine builds the default vocabulary from the generator; SPACER then pairs
  # it with the packaged reference, so both must hold the same tokens.
  monkeypatch.setenv(vocabulary.CACHE_ENV_VAR, str(tmp_path))
  built = default_vocabulary.get_or_build_default_vocabulary(
      SHIPPED['num_tokens'], SHIPPED['steps_per_token'])
  shipped = vocabulary.load_vocabulary(os.path.join(default.SHIPPED_DIR,
                                                    default.SHIPPED_VOCABULARY))
  np.testing.assert_allclose(np.asarray(built.poses), np.asarray(shipped.poses), atol=1e-6)
  np.testing.assert_allclose(np.asarray(built.box_sizes), np.asarray(shipped.box_sizes))
