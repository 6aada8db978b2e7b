"""A Waymax-compatible, jitted multi-agent driving simulator."""
