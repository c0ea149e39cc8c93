"""Explanations: what `/explain` costs beside `/score`."""
