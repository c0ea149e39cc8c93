"""The patch-level one-class model (Patch SVDD, Yi & Yoon 2020): per-patch scores on a grid."""
