"""WOSAC submission export: wire format, round trips, Scenario export."""

import os

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from spacer_jax.data.womd import read_records, scenario_to_state
from spacer_jax.eval import submission as sub
from spacer_jax.sim import builders
from spacer_jax.sim.datatypes import Trajectory


def _state(num_objects=6):
  """Four cars; car 3 appears after the current step (not a sim agent)."""
  t = np.arange(91) * 0.1
  x = np.stack([10 + 11 * t, 30 + 9 * t, 90 - 8 * t, 50 + 0 * t])
  y = np.stack([-1.75 + 0 * t, -1.75 + 0 * t, 1.75 + 0 * t, 5 + 0 * t])
  valid = np.ones((4, 91), bool)
  valid[3, :20] = False
  traj = builders.trajectory_from_arrays(x, y, np.zeros_like(x), valid,
                                         length=np.full(4, 4.5), width=np.full(4, 2.0),
                                         num_objects=num_objects)
  meta = builders.metadata_from_arrays(np.array([1, 1, 1, 2]), num_objects=num_objects,
                                       sdc_index=0, ids=np.array([101, 7, 55, 9]),
                                       is_modeled=np.array([False, True, False, False]))
  road = [builders.Polyline(np.array([[0.0, -3.5], [120, -3.5]]), 15, 1),
          builders.Polyline(np.array([[120.0, 3.5], [0, 3.5]]), 15, 2)]
  return builders.make_state(traj, meta, builders.roadgraph_from_polylines(road, 1024))


def _rollouts(state, r=3, seed=0):
  rng = np.random.default_rng(seed)
  log = state.log_trajectory
  shape = (r,) + tuple(log.x.shape[:-1]) + (80,)
  base = {n: np.broadcast_to(np.asarray(getattr(log, n))[..., 11:], shape)
          for n in ('x', 'y', 'z', 'yaw', 'length', 'width', 'height')}
  noisy = {n: (v + rng.normal(0, 0.3, shape)).astype(np.float32) for n, v in base.items()
           if n in ('x', 'y', 'yaw')}
  zeros = np.zeros(shape, np.float32)
  return Trajectory(z=base['z'], length=base['length'], width=base['width'],
                    height=base['height'], vel_x=zeros, vel_y=zeros,
                    valid=rng.random(shape) > 0.1, timestamp_micros=zeros.astype(np.int32),
                    **noisy)


def _official_like_schema():
  """The public messages built independently with protobuf's own runtime."""
  f = descriptor_pb2.FieldDescriptorProto
  proto = descriptor_pb2.FileDescriptorProto(name='wosac_test.proto', package='wt',
                                             syntax='proto2')
  st = proto.message_type.add(name='SimulatedTrajectory')
  for name, number in (('center_x', 2), ('center_y', 3), ('center_z', 4), ('heading', 5),
                       ('width', 7), ('length', 8), ('height', 9)):
    st.field.add(name=name, number=number, type=f.TYPE_FLOAT, label=f.LABEL_REPEATED,
                 options=descriptor_pb2.FieldOptions(packed=True))
  st.field.add(name='object_id', number=6, type=f.TYPE_INT32, label=f.LABEL_OPTIONAL)
  st.field.add(name='object_type', number=10, type=f.TYPE_INT32, label=f.LABEL_OPTIONAL)
  st.field.add(name='valid', number=11, type=f.TYPE_BOOL, label=f.LABEL_REPEATED,
               options=descriptor_pb2.FieldOptions(packed=True))
  js = proto.message_type.add(name='JointScene')
  js.field.add(name='simulated_trajectories', number=1, type=f.TYPE_MESSAGE,
               label=f.LABEL_REPEATED, type_name='.wt.SimulatedTrajectory')
  sr = proto.message_type.add(name='ScenarioRollouts')
  sr.field.add(name='scenario_id', number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
  sr.field.add(name='joint_scenes', number=2, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED,
               type_name='.wt.JointScene')
  su = proto.message_type.add(name='SimAgentsChallengeSubmission')
  su.field.add(name='scenario_rollouts', number=1, type=f.TYPE_MESSAGE,
               label=f.LABEL_REPEATED, type_name='.wt.ScenarioRollouts')
  su.field.add(name='submission_type', number=2, type=f.TYPE_INT32, label=f.LABEL_OPTIONAL)
  for name, number in (('account_name', 3), ('unique_method_name', 4), ('affiliation', 6),
                       ('description', 7), ('method_link', 8),
                       ('num_model_parameters', 12)):
    su.field.add(name=name, number=number, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
  for name, number in (('authors', 5), ('public_model_names', 13)):
    su.field.add(name=name, number=number, type=f.TYPE_STRING, label=f.LABEL_REPEATED)
  for name, number in (('uses_lidar_data', 9), ('uses_camera_data', 10),
                       ('uses_public_model_pretraining', 11),
                       ('acknowledge_complies_with_closed_loop_requirement', 14)):
    su.field.add(name=name, number=number, type=f.TYPE_BOOL, label=f.LABEL_OPTIONAL)
  pool = descriptor_pool.DescriptorPool()
  pool.Add(proto)
  return message_factory.GetMessageClass(
      pool.FindMessageTypeByName('wt.SimAgentsChallengeSubmission'))


META = sub.SubmissionMetadata(
    account_name='someone@example.com', unique_method_name='spacer', authors=('A', 'B'),
    affiliation='lab', description='test', method_link='http://x',
    uses_lidar_data=False, uses_camera_data=False, uses_public_model_pretraining=True,
    num_model_parameters='3M', public_model_names=('m1',),
    acknowledge_complies_with_closed_loop_requirement=True)


def test_sim_agents_are_the_objects_valid_at_step_10():
  state = _state()
  out = sub.rollouts_to_submission(state, _rollouts(state), 'scene-1')
  assert len(out) == 1
  assert out[0].object_ids.tolist() == [101, 7, 55]
  assert out[0].center_x.shape == (3, 3, 80)
  assert out[0].valid is None and out[0].length is None


def test_write_read_round_trip_is_exact(tmp_path):
  state = _state()
  rollouts = _rollouts(state)
  scenes = sub.rollouts_to_submission(state, rollouts, 'scene-1',
                                      include_optional_fields=True)
  path = os.path.join(tmp_path, 'sub', 'submission.binproto')
  size = sub.write_submission(path, scenes, META)
  assert size == os.path.getsize(path)
  back, meta = sub.read_submission(path)
  assert meta == META
  assert len(back) == 1 and back[0].scenario_id == 'scene-1'
  for name in ('object_ids', 'center_x', 'center_y', 'center_z', 'heading', 'length',
               'width', 'height', 'valid', 'object_types'):
    np.testing.assert_array_equal(getattr(back[0], name), getattr(scenes[0], name), name)
  # Back onto the state's slots: the same numbers where submitted, invalid elsewhere.
  traj = sub.submission_to_rollouts(back[0], state)
  np.testing.assert_array_equal(np.asarray(traj.x)[:, :3], np.asarray(rollouts.x)[:, :3])
  np.testing.assert_array_equal(np.asarray(traj.yaw)[:, :3],
                                np.asarray(rollouts.yaw)[:, :3])
  assert np.asarray(traj.valid)[:, :3].all() and not np.asarray(traj.valid)[:, 3:].any()


def test_bytes_parse_with_an_independent_protobuf_schema():
  state = _state()
  scenes = sub.rollouts_to_submission(state, _rollouts(state), 'scene-1',
                                      include_optional_fields=True)
  message = _official_like_schema().FromString(sub.encode_submission(scenes, META))
  assert message.submission_type == 1 and list(message.authors) == ['A', 'B']
  assert message.acknowledge_complies_with_closed_loop_requirement
  assert len(message.scenario_rollouts[0].joint_scenes) == 3
  traj = message.scenario_rollouts[0].joint_scenes[2].simulated_trajectories[1]
  assert traj.object_id == 7 and traj.object_type == 1
  np.testing.assert_array_equal(np.array(traj.center_y, np.float32),
                                scenes[0].center_y[2, 1])
  np.testing.assert_array_equal(np.array(traj.valid), scenes[0].valid[2, 1])
  # And the other way: protobuf's serialization decodes the same, even with the objects
  # of a later scene in another order (the first scene's order is kept).
  scene = message.scenario_rollouts[0].joint_scenes[1]
  first = scene.simulated_trajectories[0]
  scene.simulated_trajectories.append(first)
  del scene.simulated_trajectories[0]
  back, meta = sub.decode_submission(message.SerializeToString())
  assert meta == META
  np.testing.assert_array_equal(back[0].heading, scenes[0].heading)


def test_malformed_inputs_raise():
  state = _state()
  scenes = sub.rollouts_to_submission(state, _rollouts(state), 'scene-1')
  data = sub.encode_submission(scenes)
  with pytest.raises(sub.SubmissionError):
    sub.decode_submission(data[:-7])
  with pytest.raises(sub.SubmissionError, match='scenario_ids'):
    sub.rollouts_to_submission(state, _rollouts(state), ['a', 'b'])
  with pytest.raises(sub.SubmissionError, match='rollouts have shape'):
    bad = _rollouts(state)
    sub.rollouts_to_submission(state, bad.replace(x=bad.x[..., :10]), 'a')
  with pytest.raises(sub.SubmissionError, match='not in the state'):
    other = scenes[0]
    other.object_ids = other.object_ids + 1000
    sub.submission_to_rollouts(other, state)


def test_batched_states_and_scenario_export(tmp_path):
  a, b = _state(), _state()
  stacked = builders.stack_states([a, b])
  rollouts = _rollouts(stacked)
  scenes = sub.rollouts_to_submission(stacked, rollouts, ['s0', 's1'])
  assert [s.scenario_id for s in scenes] == ['s0', 's1']
  np.testing.assert_array_equal(scenes[1].center_x, np.asarray(rollouts.x)[:, 1, :3])
  path = os.path.join(tmp_path, 'scenarios.tfrecord')
  assert sub.write_scenarios(path, stacked, ['s0', 's1']) == 2
  records = [r for _, r in read_records(path)]
  back = scenario_to_state(records[1], max_num_objects=6, max_num_rg_points=1024)
  np.testing.assert_array_equal(np.asarray(back.log_trajectory.x),
                                np.asarray(b.log_trajectory.x))
  assert np.asarray(back.object_metadata.ids)[:4].tolist() == [101, 7, 55, 9]
