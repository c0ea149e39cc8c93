"""`python -m bench.observability_cost`: runs the experiment (run.main)."""

from bench.observability_cost.run import main

main()
