"""TensorFlow, imported once with its GPUs hidden.

The WOMD readers only use TensorFlow for TFRecord I/O and the ``tf.train.Example``
proto. JAX owns the accelerators: if TensorFlow saw a GPU it would reserve most of its
memory at first use, so every reader module imports TensorFlow through here.
"""

from __future__ import annotations

import tensorflow as tf

try:
  tf.config.set_visible_devices([], 'GPU')
except (RuntimeError, ValueError):
  # RuntimeError: TensorFlow already initialised its devices (someone imported and used
  # it first); nothing more can be done here. ValueError: no GPU support at all.
  pass

__all__ = ['tf']
