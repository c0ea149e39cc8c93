"""`python -m bench.figures`: runs the experiment (run.main)."""

import sys

from bench.figures.run import main

main(sys.argv[1:])
