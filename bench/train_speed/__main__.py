"""`python -m bench.train_speed`: runs the experiment (run.main)."""

import sys

from bench.train_speed.run import main

main(sys.argv[1:])
