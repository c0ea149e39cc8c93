"""`python -m bench.defects`: runs the benchmark (run.main)."""

from bench.defects.run import main

main()
