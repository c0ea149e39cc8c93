"""`python -m cli` runs the `deepsvdd` command line."""

import sys

from cli.main import main

sys.exit(main())
