"""`python -m bench.soak`: runs the experiment (run.main)."""

from bench.soak.run import main

main()
