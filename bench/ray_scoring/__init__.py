"""Offline scoring on Ray Data: images/s and peak memory against the local engine."""
