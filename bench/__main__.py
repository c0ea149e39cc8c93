"""`python -m bench`: the list of experiments, each with its one-line description."""

from bench.index import experiments

for name, description in experiments().items():
    print(f"{name:14} {description}")
print("\nRun one: python -m bench.<name> --help  (or: make bench NAME=<name> ARGS='...')")
