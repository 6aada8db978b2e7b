"""Scripted sim agents: log replay, constant velocity, IDM along the logged path."""
