"""`python -m bench.ray_scoring`: runs the experiment (run.main)."""

from bench.ray_scoring.run import main

main()
