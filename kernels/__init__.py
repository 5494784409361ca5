"""Triton kernels of confgf_fast, installed as the subpackage ``confgf_fast.kernels``.

One module per op (pairwise_distance, coord_score, langevin_step). Each registers a
``torch.library.triton_op`` named ``confgf_fast::triton_<op>`` when imported, so torch.compile can
trace into the kernel. Importing this package does not import Triton: ``confgf_fast.ops`` imports
the op modules only when the Triton backend is first used (the Triton interpreter is chosen by the
TRITON_INTERPRET environment variable at Triton's import time, so the import must stay lazy).

``python -m confgf_fast.kernels.aot --arch 90 [--arch 80]`` compiles every kernel here ahead of
time to cubins without a GPU and reports registers, spills and shared memory (aot.py).
"""

OPS = ("pairwise_distance", "coord_score", "langevin_step")
