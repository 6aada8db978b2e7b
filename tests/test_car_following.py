"""The car-following scene set: scenes as specified, and a score that tells a follower
that brakes (IDM, the careful log) from one that does not (constant velocity)."""

import jax
import numpy as np
import pytest

from spacer_jax.eval import car_following as cf
from spacer_jax.eval.sim_agent_policies import ConstantVelocityPolicy, IDMPolicy, LogReplayPolicy
from spacer_jax.sim.agents.idm import IDMAgent
from spacer_jax.tokens.builder import primitive_vocabulary

CASES = [cf.FollowCase('stopped', 20.0, 80.0), cf.FollowCase('queue', 10.0, 40.0, 150.0),
         cf.FollowCase('braking', 20.0, 30.0, decel=4.0),
         cf.FollowCase('slower', 20.0, 40.0, 150.0, leader_speed=10.0)]
VOCAB = primitive_vocabulary(16)


@pytest.fixture(scope='module')
def scenes():
  return cf.follow_scenes(CASES)


def test_scenes_place_the_leader_as_specified(scenes):
  log = scenes.log_trajectory
  t = cf.CURRENT
  centre_gap = np.hypot(log.x[:, 0, t] - log.x[:, 1, t], log.y[:, 0, t] - log.y[:, 1, t])
  # Bumper to bumper (the bend's chord is a little shorter than its arc).
  np.testing.assert_allclose(np.asarray(centre_gap) - cf.LENGTH, [c.gap for c in CASES],
                             rtol=0.01)
  speed = np.hypot(log.vel_x[:, 1, t], log.vel_y[:, 1, t])
  np.testing.assert_allclose(np.asarray(speed), [c.speed for c in CASES], rtol=0.02)
  lead_end = np.hypot(log.vel_x[:, 0, -1], log.vel_y[:, 0, -1])
  np.testing.assert_allclose(np.asarray(lead_end), [0.0, 0.0, 0.0, 10.0], atol=0.05)
  assert np.asarray(scenes.object_metadata.is_modeled)[:, 1].all()
  assert not np.asarray(scenes.object_metadata.is_modeled)[:, [0, 2, 3]].any()
  assert np.asarray(scenes.object_metadata.is_valid)[1].sum() == 4  # the queue
  alone = cf.follow_scene(CASES[1], with_leader=False)  # the ablation: follower alone
  assert np.asarray(alone.log_trajectory.valid).any(-1).tolist()[:4] == [False, True,
                                                                         False, False]
  with pytest.raises(ValueError, match='leader'):
    cf.FollowCase('parked', 10.0, 10.0)
  assert len(cf.default_cases()) == 48 and max(c.speed for c in cf.default_cases()) == 30.0


def test_the_score_tells_braking_followers_from_blind_ones(scenes):
  key = jax.random.PRNGKey(0)
  run = lambda policy: cf.run_following(policy, None, CASES, key, vocab=VOCAB, rollouts=1,
                                        scenes=scenes)
  log = run(LogReplayPolicy())
  blind = run(ConstantVelocityPolicy())
  idm = run(IDMPolicy(cf.follow_env(), IDMAgent()))
  # The log slows behind its leader: no contact, always behind.
  assert log['no_contact'] == 1.0 and log['behind'] == 1.0
  # Constant velocity drives into the stopped and braking leaders on the straight road
  # (in the bend it leaves the lane instead).
  for name in (CASES[0].name, CASES[2].name):
    assert blind['cases'][name]['no_contact'] == 0.0, name
  # IDM follows its logged path and brakes for what is ahead.
  assert idm['no_contact'] == 1.0, idm['cases']
  # Slowed from 20 m/s to a crawl behind the stopped car (IDM creeps up to its gap).
  assert idm['cases'][CASES[0].name]['final_speed'] < 0.25 * CASES[0].speed
