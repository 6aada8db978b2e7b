"""Scale-out: the data-parallel device mesh and multi-process (multi-host) set-up."""

from spacer_jax.parallel.distributed import (
    distributed_requested,
    host_rng,
    is_main_process,
    maybe_initialize,
)
from spacer_jax.parallel.mesh import (
    DATA_AXIS,
    batch_sharding,
    check_divisible,
    constrain,
    first_local_rows,
    make_mesh,
    num_shards,
    process_rows,
    replicate,
    replicated,
    shard_batch,
    shard_rows,
    to_host,
)

__all__ = ['DATA_AXIS', 'batch_sharding', 'check_divisible', 'constrain',
           'distributed_requested', 'first_local_rows', 'host_rng', 'is_main_process',
           'make_mesh', 'maybe_initialize', 'num_shards', 'process_rows',
           'replicate', 'replicated', 'shard_batch', 'shard_rows', 'to_host']
