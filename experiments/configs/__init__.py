"""ml_collections configs for the binaries under experiments/."""
