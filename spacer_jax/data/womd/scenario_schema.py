"""A runtime-built protobuf schema for WOMD ``Scenario`` records (no protoc, no Waymo code).

The message classes are declared here with the public wire format's field numbers and
types (``shared/specs/womd_scenario.md``) and built at import time with
``descriptor_pb2`` + ``message_factory`` in a private descriptor pool, so they never
clash with another ``waymo.open_dataset`` schema loaded in the same process.

Only what the reader needs is declared. Everything else - lidar and camera data
(``Scenario`` fields 12 and 13), lane neighbours and boundaries (``LaneCenter`` 11-14),
difficulty details - parses as unknown fields and is ignored. Enums are declared as
int32: the varint encoding is the same, and values outside the known range survive
instead of being moved to unknown fields.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = 'waymo.open_dataset'
_F = descriptor_pb2.FieldDescriptorProto

# message name -> [(field name, number, type, label, message type or None, options)]
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_SCHEMA = {
    'MapPoint': [('x', 1, _F.TYPE_DOUBLE, _OPT, None), ('y', 2, _F.TYPE_DOUBLE, _OPT, None),
                 ('z', 3, _F.TYPE_DOUBLE, _OPT, None)],
    'ObjectState': [
        ('center_x', 2, _F.TYPE_DOUBLE, _OPT, None),
        ('center_y', 3, _F.TYPE_DOUBLE, _OPT, None),
        ('center_z', 4, _F.TYPE_DOUBLE, _OPT, None),
        ('length', 5, _F.TYPE_FLOAT, _OPT, None), ('width', 6, _F.TYPE_FLOAT, _OPT, None),
        ('height', 7, _F.TYPE_FLOAT, _OPT, None), ('heading', 8, _F.TYPE_FLOAT, _OPT, None),
        ('velocity_x', 9, _F.TYPE_FLOAT, _OPT, None),
        ('velocity_y', 10, _F.TYPE_FLOAT, _OPT, None),
        ('valid', 11, _F.TYPE_BOOL, _OPT, None)],
    'Track': [('id', 1, _F.TYPE_INT32, _OPT, None),
              ('object_type', 2, _F.TYPE_INT32, _OPT, None),
              ('states', 3, _F.TYPE_MESSAGE, _REP, 'ObjectState')],
    'RequiredPrediction': [('track_index', 1, _F.TYPE_INT32, _OPT, None),
                           ('difficulty', 2, _F.TYPE_INT32, _OPT, None)],
    'TrafficSignalLaneState': [('lane', 1, _F.TYPE_INT64, _OPT, None),
                               ('state', 2, _F.TYPE_INT32, _OPT, None),
                               ('stop_point', 3, _F.TYPE_MESSAGE, _OPT, 'MapPoint')],
    'DynamicMapState': [('lane_states', 1, _F.TYPE_MESSAGE, _REP, 'TrafficSignalLaneState')],
    'LaneCenter': [('speed_limit_mph', 1, _F.TYPE_DOUBLE, _OPT, None),
                   ('type', 2, _F.TYPE_INT32, _OPT, None),
                   ('interpolating', 3, _F.TYPE_BOOL, _OPT, None),
                   ('polyline', 8, _F.TYPE_MESSAGE, _REP, 'MapPoint'),
                   ('entry_lanes', 9, _F.TYPE_INT64, _REP, None, 'packed'),
                   ('exit_lanes', 10, _F.TYPE_INT64, _REP, None, 'packed')],
    'RoadLine': [('type', 1, _F.TYPE_INT32, _OPT, None),
                 ('polyline', 2, _F.TYPE_MESSAGE, _REP, 'MapPoint')],
    'RoadEdge': [('type', 1, _F.TYPE_INT32, _OPT, None),
                 ('polyline', 2, _F.TYPE_MESSAGE, _REP, 'MapPoint')],
    'StopSign': [('lane', 1, _F.TYPE_INT64, _REP, None),
                 ('position', 2, _F.TYPE_MESSAGE, _OPT, 'MapPoint')],
    'Crosswalk': [('polygon', 1, _F.TYPE_MESSAGE, _REP, 'MapPoint')],
    'SpeedBump': [('polygon', 1, _F.TYPE_MESSAGE, _REP, 'MapPoint')],
    'Driveway': [('polygon', 1, _F.TYPE_MESSAGE, _REP, 'MapPoint')],
    'MapFeature': [('id', 1, _F.TYPE_INT64, _OPT, None),
                   ('lane', 3, _F.TYPE_MESSAGE, _OPT, 'LaneCenter', 'oneof'),
                   ('road_line', 4, _F.TYPE_MESSAGE, _OPT, 'RoadLine', 'oneof'),
                   ('road_edge', 5, _F.TYPE_MESSAGE, _OPT, 'RoadEdge', 'oneof'),
                   ('stop_sign', 7, _F.TYPE_MESSAGE, _OPT, 'StopSign', 'oneof'),
                   ('crosswalk', 8, _F.TYPE_MESSAGE, _OPT, 'Crosswalk', 'oneof'),
                   ('speed_bump', 9, _F.TYPE_MESSAGE, _OPT, 'SpeedBump', 'oneof'),
                   ('driveway', 10, _F.TYPE_MESSAGE, _OPT, 'Driveway', 'oneof')],
    'Scenario': [('scenario_id', 5, _F.TYPE_STRING, _OPT, None),
                 ('timestamps_seconds', 1, _F.TYPE_DOUBLE, _REP, None),
                 ('current_time_index', 10, _F.TYPE_INT32, _OPT, None),
                 ('tracks', 2, _F.TYPE_MESSAGE, _REP, 'Track'),
                 ('dynamic_map_states', 7, _F.TYPE_MESSAGE, _REP, 'DynamicMapState'),
                 ('map_features', 8, _F.TYPE_MESSAGE, _REP, 'MapFeature'),
                 ('sdc_track_index', 6, _F.TYPE_INT32, _OPT, None),
                 ('objects_of_interest', 4, _F.TYPE_INT32, _REP, None),
                 ('tracks_to_predict', 11, _F.TYPE_MESSAGE, _REP, 'RequiredPrediction')],
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
  proto = descriptor_pb2.FileDescriptorProto(
      name='spacer_jax/womd_scenario.proto', package=_PACKAGE, syntax='proto2')
  for message_name, fields in _SCHEMA.items():
    message = proto.message_type.add(name=message_name)
    if any('oneof' in spec[5:] for spec in fields):
      message.oneof_decl.add(name='feature_data')
    for name, number, ftype, label, type_name, *flags in fields:
      field = message.field.add(name=name, number=number, type=ftype, label=label)
      if type_name is not None:
        field.type_name = f'.{_PACKAGE}.{type_name}'
      if 'packed' in flags:
        field.options.packed = True
      if 'oneof' in flags:
        field.oneof_index = 0
  return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def message_class(name: str) -> type:
  """The generated message class of ``waymo.open_dataset.<name>``."""
  return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f'{_PACKAGE}.{name}'))


Scenario = message_class('Scenario')
Track = message_class('Track')
ObjectState = message_class('ObjectState')
MapFeature = message_class('MapFeature')
MapPoint = message_class('MapPoint')
DynamicMapState = message_class('DynamicMapState')
