"""Shared pytest setup.

TRITON_INTERPRET selects Triton's CPU interpreter and is read when Triton is imported, so it is
set here, before any test module can import Triton, on machines without a CUDA GPU (an explicit
setting in the environment wins).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
