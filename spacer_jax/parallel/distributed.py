"""Multi-process (multi-host) set-up: ``jax.distributed`` behind a switch, process helpers.

A multi-host run starts one identical process per host (TPU VM worker) or per GPU
(SLURM task); each calls :func:`maybe_initialize` before touching JAX. Switched on by
``--distributed`` or ``SPACER_JAX_DISTRIBUTED=1``; the coordinator address, process
count and id come from the arguments, else from ``JAX_COORDINATOR_ADDRESS`` /
``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``, else from JAX's cluster auto-detection
(SLURM, Cloud TPU, Open MPI, Kubernetes).
"""

from __future__ import annotations

import os
from typing import Optional

import jax
import numpy as np

ENV_SWITCH = 'SPACER_JAX_DISTRIBUTED'


def _env_int(name: str) -> Optional[int]:
  value = os.environ.get(name, '')
  if not value:
    return None
  try:
    return int(value)
  except ValueError as err:
    raise ValueError(f'environment variable {name}={value!r} is not an integer.') from err


def distributed_requested(flag: bool = False) -> bool:
  """True when the flag is set or ``SPACER_JAX_DISTRIBUTED`` is 1 / true / yes."""
  return flag or os.environ.get(ENV_SWITCH, '').strip().lower() in ('1', 'true', 'yes')


def maybe_initialize(enabled: bool = False, coordinator_address: str = '',
                     num_processes: int = 0, process_id: int = -1) -> bool:
  """Initialises ``jax.distributed`` when requested; safe to call any number of times.

  Must run before any JAX computation or device query in the process.

  Args:
    enabled: the ``--distributed`` flag (the environment switch also enables).
    coordinator_address: ``host:port`` of process 0; '' = environment / auto-detect.
    num_processes: total processes; 0 = environment / auto-detect.
    process_id: this process's id; -1 = environment / auto-detect.

  Returns:
    True when the process is (now or already) part of a distributed run.
  """
  if jax.distributed.is_initialized():
    return True
  if not distributed_requested(enabled):
    return False
  num = num_processes or _env_int('JAX_NUM_PROCESSES')
  pid = process_id if process_id >= 0 else _env_int('JAX_PROCESS_ID')
  if num is not None and pid is not None and not 0 <= pid < num:
    raise ValueError(f'process_id={pid} not in [0, num_processes={num}).')
  jax.distributed.initialize(coordinator_address=coordinator_address or None,
                             num_processes=num, process_id=pid)
  return True


def is_main_process() -> bool:
  """Process 0: the one that logs, writes reports and renders videos."""
  return jax.process_index() == 0


def host_rng(seed: int) -> np.random.Generator:
  """A numpy generator for host-side randomness, a different stream on every process
  (``seed`` and the process index both enter the seed sequence)."""
  return np.random.default_rng([int(seed), jax.process_index()])


__all__ = ['ENV_SWITCH', 'distributed_requested', 'host_rng',
           'is_main_process', 'maybe_initialize']
