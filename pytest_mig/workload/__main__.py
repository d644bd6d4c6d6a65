"""`python -m pytest_mig.workload ...`: runs the child program's command line (cli.py).

The run over (LoadGen's logs written, files closed, output flushed), the process ends at once:
interpreter teardown with torch loaded took seconds on a loaded 2-core CPU (3.4 s measured),
time the plugin would count as the main's.
"""
import os
import sys

from pytest_mig.workload.cli import main

code = main()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
