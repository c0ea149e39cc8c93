"""Anomaly maps: what `explain=true` costs in images/s, raw and through the service."""
