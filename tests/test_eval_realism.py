"""WOSAC estimators and end-to-end realism scores (spacer_jax.eval.realism)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from factories import small_realism_options

from spacer_jax.eval import (
    CONFIG_2024,
    CONFIG_2025,
    FEATURE_NAMES,
    RealismOptions,
    aggregate,
    compute_realism,
    estimators,
)
from spacer_jax.eval.realism import compute_features, score_features
from spacer_jax.sim import builders
from spacer_jax.sim.datatypes import TrafficLightStates, Trajectory

R = 4  # rollouts (32 in the challenge; the estimators do not care)
OPTIONS = small_realism_options()


# -- estimators ----------------------------------------------------------------------------


def test_histogram_known_answer_clipping_and_nan():
  # Bins of [0, 10] x 5: [0, 2), [2, 4), [4, 6), [6, 8), [8, 10].
  sim = jnp.array([1.0, 1.5, 3.0, 9.0, 50.0, -4.0, jnp.nan, 10.0])
  # Counts: bin0 = 1, 1.5, -4 (clipped) -> 3; bin1 = 1; bin4 = 9, 50, nan, 10 -> 4.
  ll = estimators.histogram_log_likelihood(jnp.array([0.5, 2.0, 5.0, 99.0]), sim, 0.0, 10.0,
                                           5, 0.1)
  expected = np.log(np.array([3.1, 1.1, 0.1, 4.1]) / (8 + 0.5))
  np.testing.assert_allclose(np.asarray(ll), expected, rtol=1e-5)


def test_histogram_identical_rollouts_give_the_maximum():
  log = jnp.full((2, 80), 3.3)
  sim = jnp.full((2, R * 80), 3.3)
  ll = estimators.histogram_log_likelihood(log, sim, 0.0, 25.0, 10, 0.1)
  np.testing.assert_allclose(np.asarray(ll), math.log((R * 80 + 0.1) / (R * 80 + 1.0)),
                             rtol=1e-4)


def test_bernoulli_known_answers():
  sim = jnp.array([[False] * R, [True] * (R - 1) + [False]])
  ll = estimators.bernoulli_log_likelihood(jnp.array([False, True]), sim, 0.001)
  np.testing.assert_allclose(
      np.asarray(ll), np.log([(R + 0.001) / (R + 0.002), (R - 1 + 0.001) / (R + 0.002)]),
      rtol=1e-3)


def test_masked_mean_ignores_invalid_steps():
  values = jnp.array([[1.0, jnp.nan, 3.0], [jnp.inf, 5.0, 7.0]])
  mask = jnp.array([[True, False, True], [False, True, True]])
  assert float(estimators.masked_mean(values, mask)) == pytest.approx(4.0)
  assert np.isnan(float(estimators.masked_mean(values, jnp.zeros_like(mask))))


# -- a small scenario ------------------------------------------------------------------------


def _scenario(offset=(0.0, 0.0)):
  """150 m two-lane road; the SDC closing in on a slower car ahead (TTC < 5 s at the
  end, no collision), one car westbound (all evaluated), a car parked beyond the edge;
  a red light at x = 140 that nobody reaches."""
  t = np.arange(91) * 0.1
  x = np.stack([10 + 11 * t, 31.5 + 9.5 * t, 140 - 9 * t, np.full_like(t, 70.0)])
  y = np.stack([np.full_like(t, -1.75), np.full_like(t, -1.75), np.full_like(t, 1.75),
                np.full_like(t, -6.0)])
  yaw = np.stack([np.zeros_like(t), np.zeros_like(t), np.full_like(t, np.pi),
                  np.zeros_like(t)])
  valid = np.ones((4, 91), bool)
  valid[1, 60:70] = False  # logged gap of an evaluated car
  ox, oy = offset
  traj = builders.trajectory_from_arrays(x + ox, y + oy, yaw, valid,
                                         length=np.full(4, 4.5), width=np.full(4, 2.0),
                                         num_objects=8)
  meta = builders.metadata_from_arrays(np.ones(4, np.int32), num_objects=8, sdc_index=0,
                                       is_modeled=np.array([False, True, True, False]))
  shift = np.array([ox, oy])
  road = [builders.Polyline(np.array([[0.0, -3.5], [150, -3.5]]) + shift, 15, 1),
          builders.Polyline(np.array([[150.0, 3.5], [0, 3.5]]) + shift, 15, 2),
          builders.Polyline(np.array([[0.0, -1.75], [140, -1.75]]) + shift, 2, 3),
          builders.Polyline(np.array([[140.0, -1.75], [150, -1.75]]) + shift, 2, 5),
          builders.Polyline(np.array([[150.0, 1.75], [0, 1.75]]) + shift, 2, 4)]
  rg = builders.roadgraph_from_polylines(road, num_points=1536)
  lights = builders.traffic_lights_from_arrays(
      x=np.full((1, 91), 140.0 + ox), y=np.full((1, 91), -1.75 + oy),
      state=np.full((1, 91), TrafficLightStates.STOP), lane_ids=np.full((1, 91), 5),
      valid=np.ones((1, 91), bool))
  return builders.make_state(traj, meta, rg, lights)


def _batch(*states):
  return builders.stack_states(list(states))


def _rollouts(state, policy, seed=0):
  """``(R, ..., N, 80)`` futures: 'log' (interpolating over logged gaps), 'frozen'
  (everyone stays at step 10) or 'noise' (log plus a random walk)."""
  log = jax.tree_util.tree_map(np.asarray, state.log_trajectory)
  steps = np.arange(log.x.shape[-1])
  fields = {}
  for name in ('x', 'y', 'z', 'yaw'):
    v = getattr(log, name).copy()
    if policy == 'frozen':
      v[..., 11:] = v[..., 10:11]
    else:
      for index in np.ndindex(*v.shape[:-1]):
        ok = log.valid[index]
        if ok.any():
          v[index] = np.interp(steps, steps[ok], v[index][ok])
    fields[name] = np.broadcast_to(v[..., 11:], (R,) + v[..., 11:].shape).copy()
  if policy == 'noise':
    rng = np.random.default_rng(seed)
    for name, scale in (('x', 0.6), ('y', 0.3), ('yaw', 0.05)):
      fields[name] += scale * rng.normal(size=fields[name].shape).cumsum(-1)
  shape = fields['x'].shape
  zeros = np.zeros(shape, np.float32)
  return Trajectory(vel_x=zeros, vel_y=zeros, length=zeros, width=zeros, height=zeros,
                    valid=np.ones(shape, bool), timestamp_micros=zeros.astype(np.int32),
                    **fields)


@pytest.fixture(scope='module')
def scenes():
  a, b = _scenario(), _scenario(offset=(500.0, -300.0))
  return _batch(a, b)


@pytest.fixture(scope='module')
def log_features(scenes):
  return compute_features(scenes, _rollouts(scenes, 'log'), OPTIONS)


def test_log_replay_scores_near_its_ceiling(scenes, log_features):
  res = jax.tree_util.tree_map(np.asarray, score_features(log_features, '2025'))
  assert res.meta_metric.shape == (2,)
  assert res.num_evaluated.tolist() == [3, 3]
  # Constant speeds: every valid logged speed falls in the bin holding all simulated
  # steps but the last (NaN, counted in the last bin): (79 R + 0.1) / (80 R + 1).
  np.testing.assert_allclose(res.linear_speed, (79 * R + 0.1) / (80 * R + 1.0), rtol=1e-5)
  np.testing.assert_allclose(res.angular_speed, (79 * R + 0.1) / (80 * R + 1.1), rtol=1e-5)
  no_event = (R + 0.001) / (R + 0.002)
  for name in ('collision_indication', 'offroad_indication', 'traffic_light_violation'):
    np.testing.assert_allclose(getattr(res, name), no_event, rtol=1e-6)
  # Features that change over the episode cannot reach 1 even for the log itself: the
  # logged steps spread over several bins of the (identical) simulated histograms.
  for name in FEATURE_NAMES:
    assert (getattr(res, name) > 0.2).all(), name
  assert (res.meta_metric > 0.85).all()
  np.testing.assert_allclose(res.min_ade, 0.0, atol=1e-6)
  assert res.collision_rate.tolist() == [0.0, 0.0]
  assert res.offroad_rate.tolist() == [0.0, 0.0]
  assert res.road_edge_unresolved.tolist() == [0, 0]
  # Scenario b is scenario a moved by (500, -300) m: same scores.
  for name in FEATURE_NAMES + ('meta_metric',):
    np.testing.assert_allclose(getattr(res, name)[0], getattr(res, name)[1], atol=2e-4)


def test_frozen_and_random_agents_score_low(scenes, log_features):
  log = score_features(log_features, '2025')
  frozen = compute_realism(scenes, _rollouts(scenes, 'frozen'), options=OPTIONS)
  noise = compute_realism(scenes, _rollouts(scenes, 'noise'), options=OPTIONS)
  for res in (frozen, noise):
    assert (np.asarray(res.meta_metric) < np.asarray(log.meta_metric) - 0.05).all()
    assert (np.asarray(res.kinematic) < np.asarray(log.kinematic) - 0.2).all()
    assert (np.asarray(res.min_ade) > 1.0).all()
  assert (np.asarray(frozen.linear_speed) < 0.01).all()  # no logged speed is ~0
  assert (np.asarray(frozen.min_ade) > 15.0).all()
  assert (np.asarray(noise.meta_metric) < 0.5).all()
  assert (np.asarray(noise.offroad_rate) > 0.5).all()


def test_full_episodes_and_history_are_equivalent(scenes, log_features):
  log = jax.tree_util.tree_map(np.asarray, scenes.log_trajectory)
  future = _rollouts(scenes, 'log')
  # 91-step rollouts whose history is garbage: only the future is read.
  full = jax.tree_util.tree_map(
      lambda f: np.concatenate([np.full(f.shape[:-1] + (11,), 7, f.dtype), f], -1), future)
  a = score_features(log_features, '2025')
  b = compute_realism(scenes, full, options=OPTIONS)
  for name in FEATURE_NAMES + ('meta_metric', 'min_ade'):
    np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)))
  del log


def test_invalid_logged_values_do_not_matter(scenes):
  rollouts = _rollouts(scenes, 'noise', seed=3)
  base = compute_realism(scenes, rollouts, options=OPTIONS)
  log = scenes.log_trajectory
  junk = log.replace(x=jnp.where(log.valid, log.x, 1e4), yaw=jnp.where(log.valid, log.yaw,
                                                                        2.0))
  other = compute_realism(scenes.replace(log_trajectory=junk), rollouts, options=OPTIONS)
  for name in FEATURE_NAMES + ('meta_metric', 'min_ade', 'ade'):
    np.testing.assert_array_equal(np.asarray(getattr(base, name)),
                                  np.asarray(getattr(other, name)), err_msg=name)


def test_scores_follow_each_config(log_features):
  for config in (CONFIG_2024, CONFIG_2025):
    res = jax.tree_util.tree_map(np.asarray, score_features(log_features, config))
    meta = sum(f.weight * getattr(res, f.name) for f in config.features)
    np.testing.assert_allclose(res.meta_metric, meta, rtol=1e-6)
    for bucket in ('kinematic', 'interactive', 'map_based'):
      w = config.bucket_weights(bucket)
      expected = sum(v * getattr(res, k) for k, v in w.items()) / sum(w.values())
      np.testing.assert_allclose(getattr(res, bucket), expected, rtol=1e-6)
    # 0.20 kinematic + 0.45 interactive + 0.35 map-based in both versions.
    np.testing.assert_allclose(
        res.meta_metric, 0.2 * res.kinematic + 0.45 * res.interactive + 0.35 * res.map_based,
        rtol=1e-5)


def test_aggregate_averages_scenarios(log_features):
  res = score_features(log_features, '2025')
  agg = aggregate(res)
  assert agg.meta_metric.shape == ()
  assert float(agg.meta_metric) == pytest.approx(float(np.mean(res.meta_metric)))
  assert int(agg.num_evaluated) == 6
  empty = res.replace(num_evaluated=jnp.array([3, 0]))
  assert float(aggregate([empty]).meta_metric) == pytest.approx(float(res.meta_metric[0]))


def test_bad_inputs_raise_clear_errors(scenes):
  rollouts = _rollouts(scenes, 'log')
  short = jax.tree_util.tree_map(lambda v: v[..., :50], rollouts)
  with pytest.raises(ValueError, match='rollouts have shape'):
    compute_realism(scenes, short, options=OPTIONS)
  with pytest.raises(ValueError, match='max_evaluated_objects'):
    compute_realism(scenes, rollouts, options=RealismOptions(max_evaluated_objects=2))
  with pytest.raises(ValueError, match='Unknown WOSAC config'):
    compute_realism(scenes, rollouts, config='2023')
