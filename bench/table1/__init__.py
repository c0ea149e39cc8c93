"""The paper's Table 1: Deep SVDD, the DCAE and shallow baselines per normal class."""
