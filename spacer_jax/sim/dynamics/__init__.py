"""Dynamics models: actions -> next poses, and their inverses (expert actions)."""
