"""`python -m bench.table1`: runs the experiment (run.main)."""

import sys

from bench.table1.run import main

main(sys.argv[1:])
