"""`python -m bench.decode`: runs the experiment (run.main)."""

from bench.decode.run import main

main()
