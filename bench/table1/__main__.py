"""`python -m bench.table1`: the paper's Table 1."""

import sys

from bench.table1.run import main

main(sys.argv[1:])
