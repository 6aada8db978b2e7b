"""Rendering of scenarios and rollouts (matplotlib, mp4)."""
