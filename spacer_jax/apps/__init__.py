"""End-to-end jobs that combine the packages (called by the thin binaries in experiments/)."""
