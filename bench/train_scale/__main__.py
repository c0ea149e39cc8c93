"""`python -m bench.train_scale`: runs the experiment (run.main)."""

import sys

from bench.train_scale.run import main

main(sys.argv[1:])
