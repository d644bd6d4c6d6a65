"""The layout comparison suite: one test per case (benchmark x layout) of suite.yaml beside this
file; the per-layout table and picture are written at the end of the run (report/layouts.py).

The test body is pytest_mig.case_test's: VALID (performance), accuracy target reached
(accuracy), backgrounds healthy.
"""
from pytest_mig.case_test import test_hetero  # noqa: F401  collected here
