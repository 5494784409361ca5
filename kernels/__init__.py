"""Triton kernels of confgf_fast, installed as the subpackage ``confgf_fast.kernels``.

One module per op (pairwise_distance, coord_score, langevin_step). Each registers a
``torch.library.triton_op`` named ``confgf_fast::triton_<op>`` when imported, so torch.compile can
trace into the kernel. Importing this package does not import Triton: ``confgf_fast.ops`` imports
the op modules only when the Triton backend is first used (the Triton interpreter is chosen by the
TRITON_INTERPRET environment variable at Triton's import time, so the import must stay lazy).
"""

OPS = ("pairwise_distance", "coord_score", "langevin_step")
