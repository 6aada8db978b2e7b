"""Exports a sim-agent policy's rollouts on WOMD scenarios as a WOSAC submission.

  python -m experiments.export_wosac --policy reference:default \
      --data '/data/womd/scenario/testing/testing.tfrecord-*' --out /tmp/reference.binproto \
      [--format scenario|tf_example] [--num_rollouts 32] [--max_scenarios N] [--seed 0] \
      [--account_name ME --method_name NAME --authors A,B --affiliation LAB ...]

``--policy`` takes any ``spacer_jax.eval.sim_agent_policies.load_policy`` spec
(``log_replay``, ``constant_velocity``, ``idm``, ``reference:PATH``,
``reference:default``, ``spacer:DIR``, ``ppo:DIR``, ``hr_ppo:DIR``; decoding overrides
such as ``reference:default@top_k=1``). Writes one binary ``SimAgentsChallengeSubmission``
(per scenario, 32 joint rollouts of every object valid at the current step, 80 future
steps at 10 Hz), atomically; prints a line per scenario. Read it back with
``spacer_jax.eval.submission.read_submission``.
"""

from absl import app, flags

from spacer_jax.apps import export_wosac
from spacer_jax.data.womd import set_format_flag
from spacer_jax.eval.submission import SubmissionMetadata
from spacer_jax.training.console import (
    parse_flags,
    quiet_third_party_logging,
    report_user_errors,
)

_POLICY = flags.DEFINE_string('policy', None, 'Sim-agent policy spec (load_policy).',
                              required=True)
_DATA = flags.DEFINE_string('data', None, 'Glob (or comma-separated globs) of WOMD '
                            'TFRecord files.', required=True)
_OUT = flags.DEFINE_string('out', None, 'Submission file to write.', required=True)
# A string, not an enum: a wrong value is then a one-line user error (exit 2) like the
# others instead of absl's usage dump.
_FORMAT = flags.DEFINE_string('format', 'scenario', 'Record format: scenario or tf_example.')
_ROLLOUTS = flags.DEFINE_integer('num_rollouts', export_wosac.WOSAC_ROLLOUTS,
                                 'Joint rollouts per scenario (WOSAC: 32).')
_MAX = flags.DEFINE_integer('max_scenarios', None, 'Export only the first N records.')
_SEED = flags.DEFINE_integer('seed', 0, 'Rollout seed.')
_OBJECTS = flags.DEFINE_integer('num_objects', 128, 'Object slots per scenario (grown for '
                                'scenarios with more tracks: no sim agent is dropped).')
_POINTS = flags.DEFINE_integer('num_roadgraph_points', 30000, 'Roadgraph slots.')
_ACCOUNT = flags.DEFINE_string('account_name', '', 'Submission: the Waymo account e-mail.')
_METHOD = flags.DEFINE_string('method_name', '', 'Submission: unique method name '
                              '(default: the policy\'s name).')
_AUTHORS = flags.DEFINE_list('authors', [], 'Submission: authors, comma-separated.')
_AFFILIATION = flags.DEFINE_string('affiliation', '', 'Submission: affiliation.')
_DESCRIPTION = flags.DEFINE_string('description', '', 'Submission: method description.')
_LINK = flags.DEFINE_string('method_link', '', 'Submission: link to the method.')
_ACK = flags.DEFINE_bool('acknowledge_closed_loop', False, 'Submission: acknowledge that '
                         'the method complies with the closed-loop requirement.')


def main(argv):
  del argv
  quiet_third_party_logging()
  set_format_flag('--format')  # How a wrong-format hint names it here.
  metadata = SubmissionMetadata(
      account_name=_ACCOUNT.value, unique_method_name=_METHOD.value,
      authors=tuple(_AUTHORS.value), affiliation=_AFFILIATION.value,
      description=_DESCRIPTION.value, method_link=_LINK.value,
      acknowledge_complies_with_closed_loop_requirement=_ACK.value)
  export_wosac.export_wosac(export_wosac.ExportConfig(
      policy=_POLICY.value, data=_DATA.value, out=_OUT.value, format=_FORMAT.value,
      num_rollouts=_ROLLOUTS.value, max_scenarios=_MAX.value, seed=_SEED.value,
      num_objects=_OBJECTS.value, num_roadgraph_points=_POINTS.value, metadata=metadata))


if __name__ == '__main__':
  app.run(report_user_errors(main), flags_parser=parse_flags)
