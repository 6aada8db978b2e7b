"""spacer_jax: SPACER self-play anchored to a centralized reference model, in JAX."""

__version__ = "0.1.0"
