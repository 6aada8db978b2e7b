"""Parity of spacer_jax's WOSAC metrics with the official evaluator, on real WOMD data.

For each real scenario in ``../shared/data/womd_samples/`` and each policy, this script

1. builds 32 rollouts of the 80 future steps: with numpy for the simple policies (log
   replay ``log``, constant velocity ``cv``, log plus noise ``noise``), and in closed
   loop for any ``spacer_jax.eval.load_policy`` spec (``idm``, ``reference:PATH``,
   ``spacer:WORKDIR``, ``ppo:WORKDIR``, ...: trained policies on real scenes),
2. scores them with ``spacer_jax.eval.compute_realism`` (2025 config),
3. exports them as a ``SimAgentsChallengeSubmission`` file
   (``spacer_jax.eval.submission``) and scores that file with the official
   ``sim_agents_metrics`` (waymo-open-dataset 1.6.7, 2025 config) inside its own venv,
4. prints per-feature likelihoods both ways, their differences, and the timings.

The official code is used as published, only on WOMD scenarios (its patent grant
covers evaluating sim agents on Waymo Open Dataset data); it is installed on first use
into ``~/.cache/spacer_jax/wosac_venv`` (``python -m venv`` + ``pip install
waymo-open-dataset-tf-2-12-0==1.6.7``, about 2.8 GB). Not part of the test suite.

  python benchmarks/wosac_parity.py [--rollouts 32] \
      [--policies log,cv,noise,reference:PATH,spacer:WORKDIR] \
      [--venv ~/.cache/spacer_jax/wosac_venv] [--json out.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402
import numpy as np  # noqa: E402

from spacer_jax.data.womd import parse_scenario, read_records, scenario_to_state  # noqa: E402
from spacer_jax.eval import FEATURE_NAMES, compute_realism  # noqa: E402
from spacer_jax.eval import submission as sub  # noqa: E402
from spacer_jax.sim.datatypes import INIT_STEPS, Trajectory  # noqa: E402

SAMPLES = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data',
                       'womd_samples')
PACKAGE = 'waymo-open-dataset-tf-2-12-0==1.6.7'
DEFAULT_VENV = os.path.expanduser('~/.cache/spacer_jax/wosac_venv')
SUMMARY = ('meta_metric', 'kinematic', 'interactive', 'map_based', 'min_ade', 'ade',
           'collision_rate', 'offroad_rate', 'traffic_light_violation_rate')

# Runs inside the venv: scores every submission file against the scenario file.
_OFFICIAL = r'''
import json, os, sys, time
import tensorflow as tf
import waymo_open_dataset
# The evaluator opens its config by a path relative to the package's parent folder.
os.chdir(os.path.dirname(list(waymo_open_dataset.__path__)[0]))
from waymo_open_dataset.protos import scenario_pb2, sim_agents_submission_pb2
from waymo_open_dataset.wdl_limited.sim_agents_metrics import metrics
from waymo_open_dataset.utils.sim_agents import submission_specs
scenario_file, submissions = sys.argv[1], sys.argv[2:]
scenarios = {}
for record in tf.data.TFRecordDataset(scenario_file):
  s = scenario_pb2.Scenario.FromString(record.numpy())
  scenarios[s.scenario_id] = s
try:
  config = metrics.load_metrics_config(submission_specs.ChallengeType.SIM_AGENTS)
except (AttributeError, TypeError):
  config = metrics.load_metrics_config()
names = ['metametric', 'average_displacement_error', 'min_average_displacement_error',
         'linear_speed_likelihood', 'linear_acceleration_likelihood',
         'angular_speed_likelihood', 'angular_acceleration_likelihood',
         'distance_to_nearest_object_likelihood', 'collision_indication_likelihood',
         'time_to_collision_likelihood', 'distance_to_road_edge_likelihood',
         'offroad_indication_likelihood', 'traffic_light_violation_likelihood',
         'simulated_collision_rate', 'simulated_offroad_rate',
         'simulated_traffic_light_violation_rate']
out = {}
for path in submissions:
  subm = sim_agents_submission_pb2.SimAgentsChallengeSubmission.FromString(
      open(path, 'rb').read())
  for rollouts in subm.scenario_rollouts:
    start = time.time()
    m = metrics.compute_scenario_metrics_for_bundle(
        config, scenarios[rollouts.scenario_id], rollouts)
    row = {n: float(getattr(m, n)) for n in names}
    row['seconds'] = time.time() - start
    out[f'{path}|{rollouts.scenario_id}'] = row
print('JSON' + json.dumps(out))
'''

# Official field name -> ours.
_OFFICIAL_NAMES = {f'{n}_likelihood': n for n in FEATURE_NAMES}
_OFFICIAL_NAMES.update(metametric='meta_metric', average_displacement_error='ade',
                       min_average_displacement_error='min_ade',
                       simulated_collision_rate='collision_rate',
                       simulated_offroad_rate='offroad_rate',
                       simulated_traffic_light_violation_rate='traffic_light_violation_rate')


def ensure_venv(venv: str) -> str:
  """The venv's python, creating the venv and installing the evaluator if missing."""
  python = os.path.join(venv, 'bin', 'python')
  probe = [python, '-c', 'import waymo_open_dataset.wdl_limited.sim_agents_metrics']
  if os.path.exists(python) and subprocess.run(probe, capture_output=True).returncode == 0:
    return python
  print(f'creating {venv} and installing {PACKAGE} (a few minutes) ...', flush=True)
  subprocess.run([sys.executable, '-m', 'venv', venv], check=True)
  subprocess.run([python, '-m', 'pip', 'install', '-q', PACKAGE], check=True)
  subprocess.run(probe, check=True)
  return python


def _hold_invalid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """Future values ``(N, T)`` with invalid steps holding the last valid one."""
  out = values.copy()
  for t in range(1, values.shape[1]):
    out[:, t] = np.where(valid[:, t], values[:, t], out[:, t - 1])
  return out


def make_rollouts(state, policy: str, num_rollouts: int, seed: int = 0) -> Trajectory:
  """``(R, N, 80)`` future poses of every object for a simple policy (numpy)."""
  log = jax.tree_util.tree_map(np.asarray, state.log_trajectory)
  c = INIT_STEPS
  n, t_future = log.x.shape[0], log.num_timesteps - c
  valid_now = log.valid[:, c - 1]
  poses = {}
  if policy in ('log', 'noise'):
    # Log replay, holding the last pose where the log is invalid.
    for name in ('x', 'y', 'z', 'yaw'):
      seq = np.concatenate([getattr(log, name)[:, c - 1:c], getattr(log, name)[:, c:]], 1)
      ok = np.concatenate([valid_now[:, None], log.valid[:, c:]], 1)
      poses[name] = np.broadcast_to(_hold_invalid(seq, ok)[:, 1:],
                                    (num_rollouts, n, t_future)).copy()
    if policy == 'noise':
      rng = np.random.default_rng(seed)
      steps = rng.normal(size=(3, num_rollouts, n, t_future)).cumsum(-1)
      poses['x'] += 0.05 * steps[0]
      poses['y'] += 0.05 * steps[1]
      poses['yaw'] += 0.005 * steps[2]
  elif policy == 'cv':
    dt = np.arange(1, t_future + 1) * 0.1
    for name, vel in (('x', 'vel_x'), ('y', 'vel_y')):
      start, v = getattr(log, name)[:, c - 1], getattr(log, vel)[:, c - 1]
      poses[name] = np.broadcast_to(start[:, None] + v[:, None] * dt,
                                    (num_rollouts, n, t_future)).copy()
    for name in ('z', 'yaw'):
      poses[name] = np.broadcast_to(getattr(log, name)[:, c - 1:c],
                                    (num_rollouts, n, t_future)).copy()
  else:
    raise ValueError(f'unknown policy {policy!r}')
  sizes = {k: np.broadcast_to(getattr(log, k)[:, c - 1:c], (num_rollouts, n, t_future))
           for k in ('length', 'width', 'height')}
  zeros = np.zeros((num_rollouts, n, t_future), np.float32)
  return Trajectory(
      vel_x=zeros, vel_y=zeros, valid=np.ones(zeros.shape, bool),
      timestamp_micros=np.zeros(zeros.shape, np.int32),
      **{k: v.astype(np.float32) for k, v in {**poses, **sizes}.items()})


def closed_loop_rollouts(state, spec: str, num_rollouts: int, seed: int = 0) -> Trajectory:
  """``(R, N, 80)`` closed-loop rollouts of a ``load_policy`` spec on one scenario."""
  from spacer_jax.eval.sim_agent_policies import default_env, load_policy
  from spacer_jax.eval.sim_agents import realism_rollouts
  from spacer_jax.models.default_vocabulary import get_or_build_default_vocabulary
  env = default_env()
  policy, params = load_policy(spec, env=env)
  vocab = getattr(policy, 'vocab', None) or get_or_build_default_vocabulary()
  steps = (state.log_trajectory.num_timesteps - INIT_STEPS) // vocab.steps_per_token
  rollouts = realism_rollouts(policy, params, jax.tree_util.tree_map(jax.numpy.asarray, state),
                              jax.random.PRNGKey(seed), num_rollouts, env=env, vocab=vocab,
                              num_steps=steps)
  return jax.tree_util.tree_map(np.asarray, rollouts)


def make_any_rollouts(state, policy: str, num_rollouts: int) -> Trajectory:
  if policy in ('log', 'cv', 'noise'):
    return make_rollouts(state, policy, num_rollouts)
  return closed_loop_rollouts(state, policy, num_rollouts)


def run_official(python: str, scenario_file: str, submissions: list[str]) -> dict:
  with tempfile.NamedTemporaryFile('w', suffix='.py', delete=False) as f:
    f.write(_OFFICIAL)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', CUDA_VISIBLE_DEVICES='')
  proc = subprocess.run([python, f.name, scenario_file, *submissions], env=env,
                        capture_output=True, text=True)
  os.unlink(f.name)
  lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('JSON')]
  if proc.returncode or not lines:
    raise RuntimeError(f'official evaluator failed:\n{proc.stderr[-4000:]}')
  return json.loads(lines[-1][4:])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rollouts', type=int, default=32)
  parser.add_argument('--policies', default='log,cv,noise')
  parser.add_argument('--venv', default=DEFAULT_VENV)
  parser.add_argument('--samples', default=SAMPLES)
  parser.add_argument('--json', default=None, help='write all numbers here')
  args = parser.parse_args()

  files = sorted(glob.glob(os.path.join(args.samples, '*scenario*.tfrecord*')))
  if not files:
    sys.exit(f'no Scenario files in {args.samples}: the parity check needs real WOMD '
             'scenarios.')
  python = ensure_venv(args.venv)
  policies = args.policies.split(',')
  workdir = tempfile.mkdtemp(prefix='wosac_parity_')
  rows, report = [], {}
  for path in files:
    for _, record in read_records(path):
      scenario = parse_scenario(record)
      state = scenario_to_state(record, max_num_objects=max(128, len(scenario.tracks)),
                                max_num_rg_points=60000)
      state = jax.tree_util.tree_map(np.asarray, state)
      subs = []
      for policy in policies:
        rollouts = make_any_rollouts(state, policy, args.rollouts)
        start = time.time()
        ours = jax.tree_util.tree_map(np.asarray, compute_realism(state, rollouts))
        first = time.time() - start
        start = time.time()
        jax.block_until_ready(compute_realism(state, rollouts))
        again = time.time() - start
        out = os.path.join(workdir, f'{policy}.binproto')
        sub.write_submission(out, sub.rollouts_to_submission(state, rollouts,
                                                             scenario.scenario_id))
        subs.append(out)
        rows.append((policy, scenario.scenario_id, ours.to_dict(), first, again, out))
      official = run_official(python, os.path.abspath(path), subs)
      for policy, sid, ours, first, again, out in rows[-len(policies):]:
        theirs = {_OFFICIAL_NAMES[k]: v for k, v in official[f'{out}|{sid}'].items()
                  if k in _OFFICIAL_NAMES}
        theirs['seconds'] = official[f'{out}|{sid}']['seconds']
        report[f'{policy}|{sid}'] = dict(ours=ours, official=theirs, ours_first_s=first,
                                         ours_s=again)
  _print(report)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(report, f, indent=2)


def _print(report: dict) -> None:
  for key, r in report.items():
    ours, theirs = r['ours'], r['official']
    print(f'\n== {key}')
    print(f'{"metric":34s} {"ours":>9s} {"official":>9s} {"diff":>9s}')
    for name in (*FEATURE_NAMES, *SUMMARY):
      if name in theirs:
        print(f'{name:34s} {ours[name]:9.4f} {theirs[name]:9.4f} '
              f'{ours[name] - theirs[name]:+9.4f}')
    print(f'{"seconds (ours: first call / again)":34s} {r["ours_first_s"]:6.1f}/'
          f'{r["ours_s"]:.2f} {theirs["seconds"]:9.1f}')
    print(f'diagnostics: road_edge_unresolved={ours["road_edge_unresolved"]:.0f} '
          f'red_light_unchecked={ours["red_light_unchecked"]:.0f}')


if __name__ == '__main__':
  main()
