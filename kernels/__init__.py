"""Triton kernels of confgf_fast, installed as the subpackage ``confgf_fast.kernels``.

One module per op. The list of them is the op registry's (``confgf_fast.ops._registry``: each
OpSpec with ``triton=True``, gathered in TRITON_OPS), read by confgf_fast.ops (which backends each
op has, and what it imports on first use) and by aot.py (which modules it compiles). Module
``<op>`` defines a ``torch.library.triton_op`` named ``<op>`` (registered as
``confgf_fast::triton_<op>`` when imported, so torch.compile can trace into the kernel) taking the
arguments of the op's schema in csrc/ops.cpp. Importing this package does not import Triton:
``confgf_fast.ops`` imports the op modules only when the Triton backend is first used (the Triton
interpreter is chosen by the TRITON_INTERPRET environment variable at Triton's import time, so the
import must stay lazy).

A new Triton op: its module here, ``triton=True`` in its OpSpec, its kernels' signatures in aot.py.

``python -m confgf_fast.kernels.aot --arch 90 [--arch 80]`` compiles every kernel here ahead of
time to cubins without a GPU and reports registers, spills and shared memory (aot.py).
"""
