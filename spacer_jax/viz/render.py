"""Top-down rendering of a scenario with matplotlib: PNG frames and MP4 videos.

Works on one scenario (no batch dimensions); pick one out of a batch with
``jax.tree_util.tree_map(lambda x: x[i], state)``. Host-side only.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import matplotlib

matplotlib.use('Agg')  # Headless: rendering runs on servers without a display.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402

from spacer_jax.sim.datatypes import (  # noqa: E402
    MapElementIds,
    ObjectType,
    SimulatorState,
    TrafficLightStates,
)

# Map element colours by type group.
_ROAD_EDGE = '#222222'
_LANE = '#b0b0b0'
_ROAD_LINE = '#d9b44a'
_CROSSWALK = '#7fa7d9'
_OBJECT_COLOURS = {
    ObjectType.VEHICLE: '#4a7fd9', ObjectType.PEDESTRIAN: '#d97f4a',
    ObjectType.CYCLIST: '#5fb35f', ObjectType.OTHER: '#8a8a8a', ObjectType.UNSET: '#8a8a8a',
}
_LIGHT_COLOURS = {
    TrafficLightStates.STOP: 'red', TrafficLightStates.ARROW_STOP: 'red',
    TrafficLightStates.FLASHING_STOP: 'red', TrafficLightStates.CAUTION: 'orange',
    TrafficLightStates.ARROW_CAUTION: 'orange',
    TrafficLightStates.FLASHING_CAUTION: 'orange', TrafficLightStates.GO: 'green',
    TrafficLightStates.ARROW_GO: 'green',
}


def _np(x) -> np.ndarray:
  return np.asarray(x)


def _check_unbatched(state: SimulatorState) -> None:
  if state.shape != ():
    raise ValueError(f'render expects one scenario, got batch shape {state.shape}; '
                     'select one with tree_map(lambda x: x[i], state).')


def plot_roadgraph(ax: plt.Axes, state: SimulatorState) -> None:
  """Draws the map: lanes, road lines, road edges and crosswalks as point polylines."""
  rg = state.roadgraph_points
  valid, types, ids = _np(rg.valid), _np(rg.types), _np(rg.ids)
  x, y = _np(rg.x), _np(rg.y)
  groups = [
      ((types >= MapElementIds.ROAD_EDGE_UNKNOWN) & (types <= MapElementIds.ROAD_EDGE_MEDIAN),
       _ROAD_EDGE, 1.2),
      ((types >= MapElementIds.LANE_UNDEFINED) & (types <= MapElementIds.LANE_BIKE_LANE),
       _LANE, 0.6),
      ((types >= MapElementIds.ROAD_LINE_UNKNOWN)
       & (types <= MapElementIds.ROAD_LINE_PASSING_DOUBLE_YELLOW), _ROAD_LINE, 0.8),
      (types == MapElementIds.CROSSWALK, _CROSSWALK, 1.0),
  ]
  for mask, colour, width in groups:
    mask = mask & valid
    # Break lines between polylines by inserting NaN where the id changes.
    xs, ys, pid = x[mask], y[mask], ids[mask]
    if len(xs) == 0:
      continue
    breaks = np.nonzero(np.diff(pid) != 0)[0] + 1
    xs = np.insert(xs.astype(float), breaks, np.nan)
    ys = np.insert(ys.astype(float), breaks, np.nan)
    ax.plot(xs, ys, color=colour, lw=width, zorder=1)
  stop = valid & (types == MapElementIds.STOP_SIGN)
  ax.scatter(x[stop], y[stop], marker='8', color='darkred', s=20, zorder=2)


def plot_objects(ax: plt.Axes, state: SimulatorState, t: int) -> None:
  """Draws object boxes at step ``t`` of the simulated trajectory."""
  traj = state.sim_trajectory
  corners = _np(traj.bbox_corners[:, t])
  valid = _np(traj.valid[:, t])
  meta = state.object_metadata
  types, sdc, ctrl = _np(meta.object_types), _np(meta.is_sdc), _np(meta.is_controlled)
  for i in np.nonzero(valid)[0]:
    colour = '#d62728' if sdc[i] else _OBJECT_COLOURS.get(int(types[i]), '#8a8a8a')
    ax.add_patch(Polygon(corners[i], closed=True, fc=colour, ec='black' if ctrl[i] else
                         colour, lw=0.8, alpha=0.9, zorder=3))
    front = corners[i][:2].mean(0)
    centre = corners[i].mean(0)
    ax.plot([centre[0], front[0]], [centre[1], front[1]], color='white', lw=0.6, zorder=4)


def plot_traffic_lights(ax: plt.Axes, state: SimulatorState, t: int) -> None:
  """Draws signal stop points coloured by state at step ``t``."""
  tl = state.log_traffic_light
  valid = _np(tl.valid[:, t])
  for i in np.nonzero(valid)[0]:
    colour = _LIGHT_COLOURS.get(int(_np(tl.state[i, t])), 'grey')
    ax.scatter(_np(tl.x[i, t]), _np(tl.y[i, t]), color=colour, s=25, marker='s', zorder=5)


def add_legend(ax: plt.Axes) -> None:
  """What the colours mean: object types, controlled outline, map elements, signals."""
  from matplotlib.lines import Line2D
  from matplotlib.patches import Patch
  handles = [
      Patch(fc='#d62728', label='SDC'),
      Patch(fc=_OBJECT_COLOURS[ObjectType.VEHICLE], label='vehicle'),
      Patch(fc=_OBJECT_COLOURS[ObjectType.PEDESTRIAN], label='pedestrian'),
      Patch(fc=_OBJECT_COLOURS[ObjectType.CYCLIST], label='cyclist'),
      Patch(fc='white', ec='black', label='controlled (outline)'),
      Line2D([], [], color=_ROAD_EDGE, lw=1.2, label='road edge'),
      Line2D([], [], color=_LANE, lw=0.6, label='lane centre'),
      Line2D([], [], color=_ROAD_LINE, lw=0.8, label='road line'),
      Line2D([], [], color=_CROSSWALK, lw=1.0, label='crosswalk'),
      Line2D([], [], color='red', marker='s', ls='', label='signal stop / go',
             markerfacecolor='red', markeredgecolor='green', markeredgewidth=1.5),
  ]
  ax.legend(handles=handles, loc='upper right', fontsize=5, framealpha=0.8)


def render_frame(state: SimulatorState, t: int | None = None, view_radius: float = 60.0,
                 centre: Sequence[float] | None = None, title: str | None = None,
                 dpi: int = 100, size_inches: float = 6.0, legend: bool = True
                 ) -> np.ndarray:
  """Renders step ``t`` (default: the state's timestep) to an RGB array ``(H, W, 3)``.

  The view is centred on the SDC at step ``t`` unless ``centre`` is given; axes are in
  metres (the scenario's world frame); ``legend`` explains the colours.
  """
  _check_unbatched(state)
  t = int(_np(state.timestep)) if t is None else int(t)
  fig, ax = plt.subplots(figsize=(size_inches, size_inches), dpi=dpi)
  plot_roadgraph(ax, state)
  plot_traffic_lights(ax, state, t)
  plot_objects(ax, state, t)
  if centre is None:
    sdc = int(np.argmax(_np(state.object_metadata.is_sdc)))
    traj = state.sim_trajectory
    valid_t = _np(traj.valid[sdc])
    tt = t if valid_t[t] else int(np.nonzero(valid_t)[0][-1]) if valid_t.any() else 0
    centre = (float(_np(traj.x[sdc, tt])), float(_np(traj.y[sdc, tt])))
  ax.set_xlim(centre[0] - view_radius, centre[0] + view_radius)
  ax.set_ylim(centre[1] - view_radius, centre[1] + view_radius)
  ax.set_aspect('equal')
  ax.set_title(title or f't = {t * 0.1:.1f} s')
  ax.tick_params(labelsize=6)
  ax.set_xlabel('x (m)', fontsize=7)
  ax.set_ylabel('y (m)', fontsize=7)
  if legend:
    add_legend(ax)
  fig.tight_layout()
  fig.canvas.draw()
  frame = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
  plt.close(fig)
  return frame


def save_png(state: SimulatorState, path: str, t: int | None = None, **kwargs) -> str:
  """Writes one frame to ``path`` (PNG) and returns the path."""
  import imageio.v2 as imageio
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  imageio.imwrite(path, render_frame(state, t, **kwargs))
  return path


def save_video(state: SimulatorState, path: str, start: int = 0, end: int | None = None,
               fps: int = 10, **kwargs) -> str:
  """Writes steps ``[start, end)`` of the simulated trajectory to an MP4 (ffmpeg).

  Falls back to an animated GIF next to ``path`` if no ffmpeg writer is available.
  """
  import imageio.v2 as imageio
  _check_unbatched(state)
  end = state.sim_trajectory.num_timesteps if end is None else end
  frames = [render_frame(state, t, **kwargs) for t in range(start, end)]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  try:
    # imageio-ffmpeg starts ffmpeg through subprocess with a preexec_fn, i.e. fork then
    # exec; JAX's at-fork hook warns of deadlocks in the forked Python, but the child
    # only execs ffmpeg, so exactly that warning is noise here.
    with warnings.catch_warnings():
      warnings.filterwarnings('ignore', message=r'os\.fork\(\) was called',
                              category=RuntimeWarning)
      imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)
  except (ImportError, ValueError, RuntimeError):
    path = os.path.splitext(path)[0] + '.gif'
    imageio.mimwrite(path, frames, duration=1.0 / fps)
  return path
