"""`python -m bench.serving`: runs the experiment (run.main)."""

from bench.serving.run import main

main()
