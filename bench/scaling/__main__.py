"""`python -m bench.scaling`: runs the experiment (run.main)."""

from bench.scaling.run import main

main()
