"""The dataset-writing job: one split of the synthetic dataset, then a summary."""

from __future__ import annotations

import time

from spacer_jax.data import writer


def summary_text(out_dir: str) -> str:
  """Counts, objects per type, mean valid objects and speed percentiles of every split
  written into ``out_dir`` (from the manifests)."""
  parts = []
  for split, summary in writer.dataset_summaries(out_dir).items():
    manifest = writer.read_manifest(out_dir, split)
    done = len(manifest['shards'])
    state = 'complete' if manifest.get('complete') else f'{done}/{manifest["num_shards"]} shards'
    files = writer.split_pattern(out_dir, split)
    parts.append(summary.table(title=f'[{split}] {state}; files {files}'))
  return '\n\n'.join(parts)


def run(config: writer.WriterConfig, progress: bool = True) -> writer.WriteResult:
  """Writes (or resumes) ``config.split`` and prints what was done and the summary."""
  t0 = time.perf_counter()
  result = writer.write_split(config, progress=progress)
  seconds = time.perf_counter() - t0
  new = sum(len(writer.shard_indices(config, s)) for s in result.shards_written)
  print(f'{config.split}: wrote {len(result.shards_written)} shard(s) ({new} scenarios) in '
        f'{seconds:.1f} s'
        + (f' ({new / seconds:.2f} scenarios/s)' if new else '')
        + f'; {len(result.shards_reused)} shard(s) were already finished.')
  print(summary_text(config.out_dir))
  return result
