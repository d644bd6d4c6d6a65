"""`python -m pytest_mig.workload ...`: runs the child program's command line (cli.py)."""
import sys

from pytest_mig.workload.cli import main

sys.exit(main())
