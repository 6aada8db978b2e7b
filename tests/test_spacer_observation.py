"""SPACER observation: frames, partner radius, masks, nearest road points, lights, scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spacer_jax.sim import builders
from spacer_jax.sim.datatypes import TrafficLightStates
from spacer_jax.spacer import observation as obs_lib

T = 21
NOW = 10
N = 8
# Agent slots: (x, y, yaw, speed, length, width, type) at step NOW.
AGENTS = [
    (0.0, -1.75, 0.0, 10.0, 4.5, 2.0, 1),  # 0: ego on the signalled lane, before the stop.
    (40.0, -1.75, 0.0, 8.0, 4.5, 2.0, 1),  # 1: past the stop point.
    (10.0, 1.75, np.pi, 5.0, 4.5, 2.0, 1),  # 2: opposite lane.
    (0.0, 60.0, 0.5, 1.0, 0.8, 0.8, 2),  # 3: pedestrian 60 m from agent 0.
    (-30.0, -1.75, 0.0, 50.0, 25.0, 3.0, 3),  # 4: fast, long "cyclist", 30 m behind 0.
    (20.0, 1.75, np.pi, 3.0, 4.0, 1.8, 1),  # 5: valid only before NOW.
]
STOP_X = 30.0


def _scene(num_points: int = 2048):
  """The hand-made scene above: a straight two-lane road with one signal on lane 3."""
  n, steps = len(AGENTS), np.arange(T)
  x = np.zeros((n, T))
  y = np.zeros((n, T))
  yaw = np.zeros((n, T))
  vx = np.zeros((n, T))
  vy = np.zeros((n, T))
  for i, (x0, y0, h, v, *_) in enumerate(AGENTS):
    x[i] = x0 + v * np.cos(h) * (steps - NOW) * 0.1
    y[i] = y0 + v * np.sin(h) * (steps - NOW) * 0.1
    yaw[i], vx[i], vy[i] = h, v * np.cos(h), v * np.sin(h)
  valid = np.ones((n, T), bool)
  valid[5, NOW:] = False
  traj = builders.trajectory_from_arrays(
      x, y, yaw, valid, length=np.array([a[4] for a in AGENTS]),
      width=np.array([a[5] for a in AGENTS]), vel_x=vx, vel_y=vy, num_objects=N)
  meta = builders.metadata_from_arrays(np.array([a[6] for a in AGENTS]), num_objects=N)
  road = [
      builders.Polyline(np.array([[-100.0, -3.5], [100.0, -3.5]]), 15, 1),
      builders.Polyline(np.array([[100.0, 3.5], [-100.0, 3.5]]), 15, 2),
      builders.Polyline(np.array([[-100.0, -1.75], [STOP_X, -1.75]]), 2, 3),
      builders.Polyline(np.array([[100.0, 1.75], [-100.0, 1.75]]), 2, 4),
      builders.Polyline(np.array([[STOP_X, -1.75], [100.0, -1.75]]), 2, 5),
      builders.Polyline(np.array([[10.0, -3.5], [10.0, 3.5]]), 18, 6),
  ]
  rg = builders.roadgraph_from_polylines(road, num_points=num_points)
  state = np.where(steps < 15, int(TrafficLightStates.STOP), int(TrafficLightStates.GO))
  tl = builders.traffic_lights_from_arrays(
      np.full((1, T), STOP_X), np.full((1, T), -1.75), state[None].astype(np.int32),
      np.full((1, T), 3, np.int32), np.ones((1, T), bool))
  s = builders.make_state(traj, meta, rg, tl)
  return s.replace(timestep=jnp.asarray(NOW, jnp.int32))


def _inputs(state, goal_visible=True):
  batch = state.shape
  mask = jnp.broadcast_to(jnp.arange(N) < len(AGENTS), batch + (N,))
  goal = obs_lib.goal_positions(state.log_trajectory)
  z = jnp.zeros(batch + (N,), bool)
  vis = jnp.full(batch + (N,), goal_visible)
  return mask, goal, z, z, vis


# Module-level jitted entry points: tests with equal shapes and config share one
# compilation (the unjitted pipeline runs op by op and is much slower).
_prepare = jax.jit(obs_lib.prepare_road_points, static_argnums=1)
_build = jax.jit(obs_lib.build_observation, static_argnames='config')


def _observe(state, config=obs_lib.ObservationConfig(), **kw):
  mask, goal, col, off, vis = _inputs(state)
  args = dict(agent_mask=mask, goal=goal, collided=col, offroad=off, goal_visible=vis)
  args.update(kw)
  road = _prepare(state, config)
  return _build(state, road=road, config=config, **args), road


@pytest.fixture(scope='module')
def scene():
  return _scene()


def _batch(tree, shape):
  return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, shape + x.shape), tree)


@pytest.mark.parametrize('batch', [(), (2, 1)])
def test_shapes_and_batching(scene, batch):
  obs, road = _observe(_batch(scene, batch))
  assert road.x.shape == batch + (2048,) and road.light_x.shape == batch + (256,)
  assert obs.ego.shape == batch + (N, obs_lib.EGO_DIM)
  assert obs.partners.shape == batch + (N, N - 1, obs_lib.PARTNER_DIM)
  assert obs.partner_mask.shape == batch + (N, N - 1)
  assert obs.road.shape == batch + (N, 200, obs_lib.ROAD_DIM)
  assert obs.road_mask.shape == batch + (N, 200)
  ref, _ = _observe(scene)
  np.testing.assert_allclose(obs.ego[(0,) * len(batch)], ref.ego, atol=1e-5)
  np.testing.assert_allclose(obs.road[(0,) * len(batch)], ref.road, atol=1e-5)


def test_ego_features_by_hand(scene):
  obs, _ = _observe(scene)
  ego = np.asarray(obs.ego)
  # Agent 0: speed 10/30, size (4.5, 2)/20, goal = its last logged position, 1 s
  # ahead at 10 m/s -> (10, 0) in its frame, /100.
  np.testing.assert_allclose(ego[0, :8], [1 / 3, 0.225, 0.1, 0.1, 0.0, 1, 0, 0], atol=1e-5)
  np.testing.assert_array_equal(ego[0, 8:11], [1, 0, 0])  # Vehicle.
  np.testing.assert_array_equal(ego[3, 8:11], [0, 1, 0])  # Pedestrian.
  np.testing.assert_array_equal(ego[4, 8:11], [0, 0, 1])  # Cyclist.
  # Agent 2 drives towards -x at 5 m/s: its goal is 5 m ahead in its own frame.
  np.testing.assert_allclose(ego[2, 3:5], [0.05, 0.0], atol=1e-5)


def test_partners_within_radius_in_ego_frame(scene):
  obs, _ = _observe(scene)
  mask = np.asarray(obs.partner_mask)
  # Slot order for ego 0 is "all others": 1, 2, 3, 4, 5, 6, 7.
  np.testing.assert_array_equal(mask[0], [True, True, False, True, False, False, False])
  p4 = np.asarray(obs.partners[0, 3])
  # Agent 4 is 30 m behind agent 0, same heading; speed 50 and length 25 clip to 1.
  np.testing.assert_allclose(p4[:7], [-0.6, 0.0, 1.0, 0.0, 1.0, 1.0, 0.15], atol=1e-5)
  np.testing.assert_array_equal(p4[7:], [0, 0, 1])
  # Agent 2 seen from agent 0: (10, 3.5) ahead-left, heading opposite.
  np.testing.assert_allclose(obs.partners[0, 1, :4], [0.2, 0.07, -1.0, 0.0], atol=1e-5)
  # Seen from agent 2 (facing -x, so its left is -y), agent 0 is 10 m ahead, 3.5 m left.
  np.testing.assert_allclose(obs.partners[2, 0, :2], [0.2, 0.07], atol=1e-5)
  # Masked partner slots are zero.
  assert not np.any(np.asarray(obs.partners)[~mask])


# Few partners and road points, positions unclipped: one compilation for two tests.
SMALL = obs_lib.ObservationConfig(max_partners=2, num_road_points=16, road_scale=200.0,
                                  max_prepared_points=64)


def test_partner_cap_ranks_nearest(scene):
  obs, _ = _observe(scene, SMALL)
  assert obs.partners.shape[-2] == 2
  # Ego 0's two nearest partners: agent 2 (10.6 m) and agent 4 (30 m); agent 1 is 40 m.
  x_rel = np.sort(np.asarray(obs.partners[0, :, 0]) * 50)
  np.testing.assert_allclose(x_rel, [-30.0, 10.0], atol=1e-4)


def test_invalid_agents_are_masked(scene):
  mask, _, _, _, _ = _inputs(scene)
  obs, _ = _observe(scene, agent_mask=mask.at[1].set(False))
  valid = np.asarray(obs.valid)
  # Slot 1 is masked out, slot 5 is not valid at NOW, 6 and 7 are padding.
  np.testing.assert_array_equal(valid, [1, 0, 1, 1, 1, 0, 0, 0])
  for i in np.flatnonzero(~valid):
    assert not np.any(obs.ego[i]) and not np.any(obs.partners[i]) and not np.any(obs.road[i])
    assert not np.any(obs.partner_mask[i]) and not np.any(obs.road_mask[i])
  # An object invalid at NOW is nobody's partner (slot 5 is column 4 for ego 0).
  assert not bool(obs.partner_mask[0, 4])
  # A masked-out ego still appears as a partner of the others (it is in the scene).
  assert bool(obs.partner_mask[0, 0])


def _transform_state(state, theta, shift):
  c, s = np.cos(theta), np.sin(theta)
  def pts(x, y):
    return c * x - s * y + shift[0], s * x + c * y + shift[1]
  def traj(t):
    x, y = pts(t.x, t.y)
    return t.replace(x=x, y=y, yaw=t.yaw + theta, vel_x=c * t.vel_x - s * t.vel_y,
                     vel_y=s * t.vel_x + c * t.vel_y)
  rg = state.roadgraph_points
  rx, ry = pts(rg.x, rg.y)
  rg = rg.replace(x=rx, y=ry, dir_x=c * rg.dir_x - s * rg.dir_y,
                  dir_y=s * rg.dir_x + c * rg.dir_y)
  tl = state.log_traffic_light
  tx, ty = pts(tl.x, tl.y)
  return state.replace(sim_trajectory=traj(state.sim_trajectory),
                       log_trajectory=traj(state.log_trajectory), roadgraph_points=rg,
                       log_traffic_light=tl.replace(x=tx, y=ty))


def _inner_rows(road, mask):
  """Unclipped selected rows, except those at the selection radius: rounding may swap
  points tied at that radius (the scene is symmetric), never any nearer one."""
  rows = np.asarray(road)[np.asarray(mask)]
  rows = rows[np.abs(rows[:, :2]).max(-1) < 0.99]
  d = np.hypot(rows[:, 0], rows[:, 1])
  return rows[d < d.max() - 1e-3]


def _match_rows(a, b, tol):
  """Every row of a has a row of b within tol: a is (nearly) a subset of b."""
  return len(a) == 0 or np.abs(a[:, None, :] - b[None, :, :]).max(-1).min(1).max() < tol


def test_features_are_invariant_to_rotating_the_scene(scene):
  config = obs_lib.ObservationConfig()
  ref, _ = _observe(scene, config)
  moved = _transform_state(scene, 2.1, (1234.5, -321.0))
  obs, _ = _observe(moved, config)
  np.testing.assert_allclose(obs.ego, ref.ego, atol=2e-4)
  np.testing.assert_allclose(obs.partners, ref.partners, atol=2e-4)
  np.testing.assert_array_equal(obs.partner_mask, ref.partner_mask)
  np.testing.assert_array_equal(obs.road_mask.sum(-1), ref.road_mask.sum(-1))
  for i in range(5):  # The agents valid at NOW.
    a, b = _inner_rows(ref.road[i], ref.road_mask[i]), _inner_rows(obs.road[i], obs.road_mask[i])
    assert len(a) > 100 or i == 3, len(a)
    assert _match_rows(a, np.asarray(obs.road[i]), 2e-4), f'road set of agent {i} changed'
    assert _match_rows(b, np.asarray(ref.road[i]), 2e-4), f'road set of agent {i} changed'


def test_road_points_are_the_nearest_of_the_prepared_set(scene):
  obs, road = _observe(scene, SMALL)
  px = np.asarray(road.x)[np.asarray(road.valid)]
  py = np.asarray(road.y)[np.asarray(road.valid)]
  cur = scene.current_sim_trajectory
  for i in range(5):
    ex, ey, h = float(cur.x[i, 0]), float(cur.y[i, 0]), float(cur.yaw[i, 0])
    d = np.hypot(px - ex, py - ey)
    # Selected points back in the world frame.
    lx, ly = np.asarray(obs.road[i, :, 0]) * 200, np.asarray(obs.road[i, :, 1]) * 200
    wx = ex + np.cos(h) * lx - np.sin(h) * ly
    wy = ey + np.sin(h) * lx + np.cos(h) * ly
    d_sel = np.hypot(wx - ex, wy - ey)
    assert bool(obs.road_mask[i].all())
    np.testing.assert_allclose(np.sort(d_sel), np.sort(d)[:16], atol=1e-3)


def test_prepared_set_spacing_types_and_cap(scene):
  config = obs_lib.ObservationConfig()
  road = _prepare(scene, config)
  valid = np.asarray(road.valid)
  rg = scene.roadgraph_points
  # 0.5 m samples become ~2 m ones: about a quarter of the points (+ polyline ends).
  n_rg = int(rg.valid.sum())
  assert n_rg / 4 <= valid.sum() <= n_rg / 4 + 2 * 6 + 1
  seg = np.asarray(road.static_features[:, 0]) * 2 * config.road_spacing
  assert seg[valid].max() <= 2.0 + 1e-4 and np.median(seg[valid]) == pytest.approx(2.0)
  # Types: one-hot of (lane, ..., road edge, ..., crosswalk).
  classes = np.asarray(road.static_features[:, 1:]).argmax(-1)[valid]
  assert set(classes.tolist()) == {0, 3, 5}
  # Directions are unit vectors; every prepared point is a roadgraph point.
  np.testing.assert_allclose(np.hypot(road.dir_x, road.dir_y)[valid], 1.0, atol=1e-5)
  rx, ry = np.asarray(rg.x)[np.asarray(rg.valid)], np.asarray(rg.y)[np.asarray(rg.valid)]
  d = np.hypot(np.asarray(road.x)[valid][:, None] - rx, np.asarray(road.y)[valid][:, None] - ry)
  assert d.min(1).max() < 1e-4
  # Capped: the kept points are the ones nearest to the agents' paths.
  capped = _prepare(scene, SMALL)
  assert capped.x.shape == (64,) and bool(capped.valid.all())
  log = scene.log_trajectory
  ax = np.asarray(log.x)[np.asarray(log.valid)]
  ay = np.asarray(log.y)[np.asarray(log.valid)]
  def to_paths(x, y):
    return np.hypot(x[:, None] - ax, y[:, None] - ay).min(1)
  kept = to_paths(np.asarray(capped.x), np.asarray(capped.y)).max()
  all_d = to_paths(np.asarray(road.x)[valid], np.asarray(road.y)[valid])
  # Paths are sampled every anchor_stride steps, so allow the gap between samples.
  assert kept <= np.sort(all_d)[63] + 5.0
  # Light lane points: lane 3 only, up to the stop point.
  lv = np.asarray(road.light_valid)
  assert lv.sum() > 10
  np.testing.assert_array_equal(np.asarray(road.light_lane_ids)[lv], 3)
  assert np.asarray(road.light_x)[lv].max() <= STOP_X + 1e-4


def test_light_of_the_lane_ahead(scene):
  obs, _ = _observe(scene)
  light = np.asarray(obs.ego[:, 11:15]).argmax(-1)
  dist = np.asarray(obs.ego[:, 15])
  # Agents 0 and 4 drive on lane 3 towards its red signal (stop point 30 m and 60 m
  # ahead; the distance is clipped at light_radius = 50 m). Agent 1 is past it,
  # agent 2 drives the other way, pedestrian 3 is 60 m from the lane: no light.
  np.testing.assert_array_equal(light[:5], [1, 0, 0, 0, 1])
  np.testing.assert_allclose(dist[:5], [0.6, 1.0, 1.0, 1.0, 1.0], atol=1e-5)
  # Later the light turns green.
  later, _ = _observe(scene.replace(timestep=jnp.asarray(16, jnp.int32)))
  assert int(np.asarray(later.ego[0, 11:15]).argmax()) == 3


def test_goal_dropout_hides_the_goal(scene):
  obs, _ = _observe(scene, goal_visible=jnp.zeros((N,), bool))
  assert not np.any(np.asarray(obs.ego[:, 3:6]))
  vis = obs_lib.sample_goal_visible(jax.random.PRNGKey(0), (10000,),
                                    obs_lib.ObservationConfig(goal_dropout=0.3))
  assert abs(float(vis.mean()) - 0.7) < 0.02


def test_type_index_is_the_token_contract():
  # UNSET and OTHER use the vehicle head, as the token vocabularies do.
  np.testing.assert_array_equal(obs_lib.agent_type_index(jnp.arange(5)), [0, 0, 1, 2, 0])


def test_goal_positions_are_the_last_valid_logged_positions(scene):
  goal = np.asarray(obs_lib.goal_positions(scene.log_trajectory))
  np.testing.assert_allclose(goal[0], [10.0, -1.75], atol=1e-4)  # Step 20.
  np.testing.assert_allclose(goal[5], [20.0 + 0.3, 1.75], atol=1e-4)  # Step 9.


def test_features_are_bounded_and_flags_pass_through(scene):
  _, goal, _, _, _ = _inputs(scene)
  flags = jnp.arange(N) % 2 == 0
  goal = goal.at[0].set(jnp.array([5000.0, 5000.0]))
  obs, _ = _observe(scene, goal=goal, collided=flags, offroad=~flags)
  for name in ('ego', 'partners', 'road'):
    values = np.asarray(getattr(obs, name))
    assert np.all(np.abs(values) <= 1.0), name
  # A far goal keeps its direction with norm 1.
  g = np.asarray(obs.ego[0, 3:5])
  assert np.linalg.norm(g) == pytest.approx(1.0, abs=1e-5) and g[0] > 0 and g[1] > 0
  np.testing.assert_array_equal(obs.ego[:5, 6], [1, 0, 1, 0, 1])
  np.testing.assert_array_equal(obs.ego[:5, 7], [0, 1, 0, 1, 0])


def test_bad_shapes_name_the_field(scene):
  mask, goal, col, off, vis = _inputs(scene)
  with pytest.raises(ValueError, match='agent_mask'):
    obs_lib.build_observation(scene, mask[:3], goal, col, off, vis)
  with pytest.raises(ValueError, match='goal'):
    obs_lib.build_observation(scene, mask, goal[:, 0], col, off, vis)
  with pytest.raises(ValueError, match='max_partners'):
    obs_lib.ObservationConfig(max_partners=0)


def test_motion_features_measure_the_last_token(scene):
  """Acceleration and yaw rate over the last 0.2 s: an agent that sped up by 1 m/s and
  turned left by 0.1 rad in that time reads (1, 1/0.2/5, 0.1/0.2/1); an agent without a
  valid earlier pose reads zeros; the batch and the base features are unchanged."""
  config = obs_lib.ObservationConfig(motion_lag_steps=2)
  traj = scene.sim_trajectory
  before = NOW - 2
  turned = traj.replace(
      vel_x=traj.vel_x.at[0, before].add(-1.0),
      yaw=traj.yaw.at[0, before].add(-0.1),
      valid=traj.valid.at[1, before].set(False))
  state = scene.replace(sim_trajectory=turned)
  obs, _ = _observe(state, config)
  base, _ = _observe(state)
  assert config.ego_dim == obs_lib.EGO_DIM + obs_lib.MOTION_DIM == obs.ego.shape[-1]
  np.testing.assert_allclose(obs.ego[..., :obs_lib.EGO_DIM], base.ego, atol=1e-6)
  motion = np.asarray(obs.ego[..., obs_lib.EGO_DIM:])
  np.testing.assert_allclose(motion[0], [1.0, 1.0 / 0.2 / obs_lib.ACCEL_SCALE,
                                         0.1 / 0.2 / obs_lib.YAW_RATE_SCALE], atol=1e-5)
  np.testing.assert_allclose(motion[1], 0.0)  # No earlier pose.
  np.testing.assert_allclose(motion[2], [1.0, 0.0, 0.0], atol=1e-5)  # Steady.
  # At the first step there is no history at all.
  first, _ = _observe(state.replace(timestep=jnp.asarray(1, jnp.int32)), config)
  np.testing.assert_allclose(np.asarray(first.ego[..., obs_lib.EGO_DIM:]), 0.0)
  with pytest.raises(ValueError, match='motion_lag_steps'):
    obs_lib.ObservationConfig(motion_lag_steps=-1)


def test_speeds_are_mean_speeds_over_the_last_token(scene):
  """With token_speed_steps=2 the speed seen is the distance covered over the last
  0.2 s, whatever the last sub-step's velocity: a token whose two sub-steps ran 9 and 11
  m/s reads 10 m/s (the velocity mode reads 11), and the acceleration compares two
  such windows."""
  config = obs_lib.ObservationConfig(token_speed_steps=2, motion_lag_steps=2)
  traj = scene.sim_trajectory
  # Agent 0 (10 m/s in the log): the last sub-step covers 1.1 m at 11 m/s, the one before
  # 0.9 m, so the mean over the token stays 10 m/s.
  x = traj.x.at[0, NOW - 1].add(-0.1)
  state = scene.replace(sim_trajectory=traj.replace(x=x, vel_x=traj.vel_x.at[0, NOW].set(11.0)))
  token, _ = _observe(state, config)
  velocity, _ = _observe(state, obs_lib.ObservationConfig(motion_lag_steps=2))
  scale = config.speed_scale
  assert float(token.ego[0, 0]) * scale == pytest.approx(10.0, abs=1e-4)
  assert float(velocity.ego[0, 0]) * scale == pytest.approx(11.0, abs=1e-4)
  # Steady over both windows: no acceleration (the velocity mode sees +1 m/s).
  assert float(token.ego[0, obs_lib.EGO_DIM + 1]) == pytest.approx(0.0, abs=1e-5)
  # Agent 5 is not valid now: no speed at all; partners read the same mean speeds.
  np.testing.assert_allclose(np.asarray(token.ego[5]), 0.0)
  with pytest.raises(ValueError, match='token_speed_steps'):
    obs_lib.ObservationConfig(token_speed_steps=-1)


def test_reserved_slots_hold_the_nearest_road_edges(scene):
  """The last num_edge_points road slots are the nearest road-edge points of the
  prepared set, the others the nearest points of any type."""
  config = obs_lib.ObservationConfig(num_road_points=8, num_edge_points=3,
                                     max_prepared_points=512)
  plain = obs_lib.ObservationConfig(num_road_points=5, max_prepared_points=512)
  road = _prepare(scene, config)
  cur = scene.current_sim_trajectory
  idx, found = obs_lib.observed_road_points(cur.x[:, 0], cur.y[:, 0], road, config)
  idx5, _ = obs_lib.observed_road_points(cur.x[:, 0], cur.y[:, 0], road, plain)
  idx, found, idx5 = np.asarray(idx), np.asarray(found), np.asarray(idx5)
  edge = np.asarray(obs_lib.is_edge_point(road))
  rx, ry, ok = np.asarray(road.x), np.asarray(road.y), np.asarray(road.valid)
  for agent in (0, 1, 3):
    d = np.hypot(rx - float(cur.x[agent, 0]), ry - float(cur.y[agent, 0]))
    nearest_edges = np.sort(np.where(edge, d, np.inf))[:3]
    np.testing.assert_allclose(np.sort(d[idx[agent, -3:]]), nearest_edges, atol=1e-4)
    assert edge[idx[agent, -3:]].all() and found[agent].all()
    np.testing.assert_allclose(np.sort(d[idx[agent, :5]]), np.sort(np.where(ok, d, np.inf))[:5],
                               atol=1e-4)
    np.testing.assert_array_equal(np.sort(idx[agent, :5]), np.sort(idx5[agent]))
  with pytest.raises(ValueError, match='num_edge_points'):
    obs_lib.ObservationConfig(num_road_points=8, num_edge_points=8)


def test_observation_keeps_every_agents_nearest_road_edge_on_a_whole_cpu_map():
  """On generated cpu scenes, every vehicle position of the log observes a road-edge
  point within 1 m (the 2 m point spacing) of its nearest road edge on the whole map,
  whenever that edge is within 8 m."""
  from experiments.configs import spacer as spacer_configs
  from spacer_jax.data import generator
  from spacer_jax.sim.datatypes.roadgraph import is_road_edge
  config = obs_lib.ObservationConfig(**spacer_configs.get_config('cpu').obs)
  gen = generator.GeneratorConfig(num_objects=32, num_roadgraph_points=6000)
  checked = 0
  for seed in (20_000_000, 20_000_001, 20_000_002):
    state = generator.generate_scenario(seed, gen)
    road = _prepare(state, config)
    edges = np.asarray(state.roadgraph_points.valid & is_road_edge(
        state.roadgraph_points.types))
    ex, ey = (np.asarray(state.roadgraph_points.x)[edges],
              np.asarray(state.roadgraph_points.y)[edges])
    # The whole map is prepared: every road-edge point is within spacing of a kept one.
    assert int(np.sum(np.asarray(road.valid))) < config.max_prepared_points
    log = state.log_trajectory
    vehicle = np.asarray(state.object_metadata.object_types) == 1
    for t in range(0, 91, 15):
      x, y = np.asarray(log.x[:, t]), np.asarray(log.y[:, t])
      ok = np.asarray(log.valid[:, t]) & vehicle
      idx, found = jax.jit(obs_lib.observed_road_points, static_argnums=3)(
          log.x[:, t], log.y[:, t], road, config)
      idx, found = np.asarray(idx), np.asarray(found)
      kept_edge = found & np.asarray(obs_lib.is_edge_point(road))[idx]
      rx, ry = np.asarray(road.x)[idx], np.asarray(road.y)[idx]
      d_seen = np.where(kept_edge, np.hypot(rx - x[:, None], ry - y[:, None]), np.inf).min(-1)
      d_map = np.hypot(ex[None] - x[:, None], ey[None] - y[:, None]).min(-1)
      near = ok & (d_map <= 8.0)
      checked += int(near.sum())
      assert np.all(d_seen[near] <= d_map[near] + 1.0), (seed, t)
  assert checked > 100
