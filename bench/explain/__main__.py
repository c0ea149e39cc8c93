"""`python -m bench.explain`: runs the experiment (run.main)."""

from bench.explain.run import main

main()
