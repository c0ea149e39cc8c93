"""`python -m bench.adversarial`: runs the experiment (run.main)."""

import sys

from bench.adversarial.run import main

main(sys.argv[1:])
