"""`python -m bench.beyond`: runs the experiment (run.main)."""

import sys

from bench.beyond.run import main

main(sys.argv[1:])
