"""`python -m bench.shadow_cost`: runs the experiment (run.main)."""

from bench.shadow_cost.run import main

main()
