"""Scenario sources: the procedural generator and WOMD readers."""
