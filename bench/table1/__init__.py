"""The paper's Table 1: one-class AUC of Deep SVDD, the DCAE and the shallow baselines per
normal class (`python -m bench.table1`)."""
