"""`python -m bench.grpc`: runs the experiment (run.main)."""

from bench.grpc.run import main

main()
