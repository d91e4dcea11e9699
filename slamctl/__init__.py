"""Definitions shared by every part of slamctl: the project error and the serving contract."""
