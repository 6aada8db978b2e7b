"""Per-object simulator metrics (value + validity), computed at the current step."""
