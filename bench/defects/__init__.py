"""Defects benchmark: real photographs with planted defects, and detection/localisation metrics."""
