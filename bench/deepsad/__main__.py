"""`python -m bench.deepsad`: runs the experiment (run.main)."""

from bench.deepsad.run import main

main()
