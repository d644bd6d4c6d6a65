"""The v6.0 datacenter heterogeneous MIG suite: one test per case of suite.yaml beside this file.

The test body is pytest_mig.case_test's: VALID (performance), accuracy target reached
(accuracy), backgrounds healthy.
"""
from pytest_mig.case_test import test_hetero as test_hetero_v6  # noqa: F401  collected here
