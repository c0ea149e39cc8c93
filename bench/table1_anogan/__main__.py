"""`python -m bench.table1_anogan`: runs the experiment (run.main)."""

import sys

from bench.table1_anogan.run import main

main(sys.argv[1:])
