"""absl binaries that drive spacer_jax."""
