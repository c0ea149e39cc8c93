"""Reliability suite: hostile input, slow and broken clients, overload, faults, security."""
