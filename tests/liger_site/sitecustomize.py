"""Loaded at interpreter start-up by the CPT workers of tests/test_liger.py (this directory is put
first on their PYTHONPATH): installs tests/liger_interpreter.py's shims before anything imports
Triton. Does nothing unless TRITON_INTERPRET=1."""

import os
import sys

if os.environ.get("TRITON_INTERPRET") == "1":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import liger_interpreter  # noqa: F401
