"""Training curves of ``train_spacer`` runs as one PNG (host-side, matplotlib).

Reads each run's ``metrics.jsonl`` (written by ``training.MetricLogger``) and plots,
against the agent-steps trained: the goal, collision and off-road rates of the training
episodes (solid) and of the held-out evaluation (dashed, ``eval/``), the KL to the
anchor, and the policy's entropy next to the anchor's own (a policy far above its
anchor's entropy is being flattened by the KL term). A second row holds the WOSAC
validation (``val/``: meta metric, collision rate, off-road rate excluding log-off-road
agents, minADE, linear-speed likelihood), the figures ``experiments.evaluate`` reports.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import matplotlib

matplotlib.use('Agg')  # Headless: plots are written on servers without a display.
import matplotlib.pyplot as plt  # noqa: E402

RATES = ('goal_rate', 'collision_rate', 'offroad_rate')
# (key under val/, panel title) of the WOSAC validation row.
VALIDATION = (('meta', 'WOSAC meta (higher is better)'),
              ('collision', 'WOSAC collision rate'),
              ('offroad_excl_log', 'WOSAC off-road rate excl. log off-road'),
              ('min_ade', 'minADE, m'),
              ('linear_speed_likelihood', 'linear-speed likelihood'))


def read_metrics(workdir: str) -> list[dict[str, float]]:
  """The rows of ``workdir/metrics.jsonl`` in order (eval rows carry ``eval/`` keys).

  Raises:
    FileNotFoundError: the run wrote no metrics.
  """
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{workdir!r} holds no metrics.jsonl: is it a train_spacer '
                            'workdir that ran at least one iteration?')
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _series(rows: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
  """``(agent_steps, values)`` of ``key``; eval rows take the agent-steps of their step."""
  # Step 0 (the starting policy's validation) comes before any agent-step.
  steps_at = {0: 0.0, **{r['step']: r['total_agent_steps'] for r in rows
                         if 'total_agent_steps' in r}}
  xs, ys = [], []
  for r in rows:
    if key in r and r['step'] in steps_at:
      xs.append(steps_at[r['step']])
      ys.append(r[key])
  return xs, ys


def plot_training_curves(runs: Mapping[str, str], path: str) -> str:
  """Writes the curves of ``runs`` (``{label: workdir}``) to the PNG ``path``.

  Panels: one per rate of :data:`RATES` (train solid, eval dashed), ``kl_ref`` and
  ``entropy`` (with ``anchor_entropy`` dotted); below, the :data:`VALIDATION` series
  against the same axis. Returns ``path``.
  """
  fig, grid = plt.subplots(2, 5, figsize=(22, 8.4))
  axes, val_axes = grid[0], grid[1]
  colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
  for i, (label, workdir) in enumerate(runs.items()):
    rows, colour = read_metrics(workdir), colours[i % len(colours)]
    for ax, key in zip(axes[:3], RATES):
      ax.plot(*_series(rows, key), color=colour, label=f'{label} (train)')
      xs, ys = _series(rows, f'eval/{key}')
      if xs:
        ax.plot(xs, ys, '--o', color=colour, markersize=3, label=f'{label} (eval)')
    axes[3].plot(*_series(rows, 'kl_ref'), color=colour, label=label)
    axes[4].plot(*_series(rows, 'entropy'), color=colour, label=f'{label} policy')
    xs, ys = _series(rows, 'anchor_entropy')
    if xs:
      axes[4].plot(xs, ys, ':', color=colour, label=f'{label} anchor')
    for ax, (key, _) in zip(val_axes, VALIDATION):
      ax.plot(*_series(rows, f'val/{key}'), '-o', color=colour, markersize=3, label=label)
  titles = ('goal rate (higher is better)', 'collision rate (lower is better)',
            'off-road rate (lower is better)', 'KL(pi || anchor), nats',
            'entropy per agent-step, nats')
  for ax, title in zip(axes, titles):
    ax.set_title(title, fontsize=10)
    ax.set_xlabel('agent-steps trained')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  for ax, (_, title) in zip(val_axes, VALIDATION):
    ax.set_title(title, fontsize=10)
    ax.set_xlabel('agent-steps trained')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  for ax in axes[:3]:
    ax.set_ylabel('fraction of controlled agents')
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


__all__ = ['RATES', 'VALIDATION', 'plot_training_curves', 'read_metrics']
