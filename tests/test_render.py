"""Rendered frames say what they show: a legend of colours and axes in metres."""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from spacer_jax.viz import render  # noqa: E402


def test_legend_names_objects_map_and_signals():
  fig, ax = plt.subplots()
  render.add_legend(ax)
  labels = [t.get_text() for t in ax.get_legend().get_texts()]
  plt.close(fig)
  for name in ('SDC', 'vehicle', 'pedestrian', 'cyclist', 'road edge', 'lane centre',
               'crosswalk'):
    assert name in labels


def test_frame_has_a_legend_and_metre_axes(two_lane_state, monkeypatch):
  seen = {}
  close = plt.close

  def keep(fig):  # Look at the figure render_frame drew before it is closed.
    ax = fig.axes[0]
    seen.update(xlabel=ax.get_xlabel(), ylabel=ax.get_ylabel(),
                legend=ax.get_legend() is not None)
    close(fig)

  monkeypatch.setattr(plt, 'close', keep)
  frame = render.render_frame(two_lane_state, t=10)
  assert frame.ndim == 3 and frame.shape[-1] == 3 and frame.dtype == np.uint8
  assert seen == {'xlabel': 'x (m)', 'ylabel': 'y (m)', 'legend': True}
