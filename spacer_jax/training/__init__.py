"""Shared training infrastructure: checkpoints, metric logging, host-loop helpers.

Used by every trainer (the reference model, SPACER/PPO, behaviour cloning) so that all
of them resume, log and report the same way.
"""

from spacer_jax.training.checkpoints import Checkpointer
from spacer_jax.training.logger import MetricLogger, Progress, format_duration, format_progress

__all__ = ['Checkpointer', 'MetricLogger', 'Progress', 'format_duration',
           'format_progress']
