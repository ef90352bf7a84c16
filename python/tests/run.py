"""Runs the package's pytest suite (ctest entry `python`); exit 77 = skipped when numpy or pytest is missing."""
import os
import sys

try:
    import numpy  # noqa: F401
    import pytest
except ImportError as e:
    print(f"skipped: {e} (scripts/setup.sh installs python3-numpy and python3-pytest)")
    sys.exit(77)

sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", os.path.dirname(os.path.abspath(__file__))]))
