"""Build and install confgf_fast, with its torch extension confgf_fast._C.

    pip install torch==2.13.0
    pip install --no-build-isolation -e ".[test]"     # editable (or without -e)

The extension is compiled from csrc/ops.cpp (op schemas) + csrc/cpu/*.cpp (OpenMP kernels), and
adds csrc/cuda/*.cu only when the installed torch is a CUDA build and a CUDA toolkit is found.
Environment overrides: FORCE_CUDA=1 builds the CUDA kernels whenever a toolkit is found (even
with no visible GPU, e.g. in a container build); BUILD_NO_CUDA=1 never builds them;
CONFGF_SANITIZE=address,undefined builds the CPU kernels with those sanitizers (.ci/run's asan
phase; run Python with the sanitizer runtimes in LD_PRELOAD, see there).
`--no-build-isolation` makes the build use the torch already installed, so the extension's ABI
matches it.
"""

from __future__ import annotations

import glob
import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


def _extensions():
    # torch is a build requirement; importing it lazily keeps `python setup.py --version` and
    # metadata-only calls working without it.
    import torch
    from torch.utils import cpp_extension

    def rel(pattern: str) -> list[str]:
        # setuptools wants paths relative to setup.py
        return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))

    sources = rel("csrc/ops.cpp") + rel("csrc/cpu/*.cpp")
    cuda_sources = rel("csrc/cuda/*.cu")
    # A GPU need not be visible at build time (containers, login nodes): a CUDA torch plus a
    # toolkit is enough. FORCE_CUDA=1 turns "cannot build CUDA" from a silent CPU-only build into
    # an error.
    with_cuda = (
        not _flag("BUILD_NO_CUDA")
        and bool(cuda_sources)
        and torch.version.cuda is not None
        and cpp_extension.CUDA_HOME is not None
    )
    if _flag("FORCE_CUDA") and not with_cuda and not _flag("BUILD_NO_CUDA"):
        raise RuntimeError(
            "FORCE_CUDA=1 but the CUDA kernels cannot be built: "
            f"torch.version.cuda={torch.version.cuda!r}, CUDA_HOME={cpp_extension.CUDA_HOME!r}"
        )

    # -fopenmp turns on the OpenMP pragmas inside at::parallel_for (ATen's OpenMP backend is
    # header code), so the kernels run on torch's thread pool and honour torch.set_num_threads.
    cxx_flags = ["-O3", "-fopenmp", "-DNDEBUG"]
    link_flags = ["-fopenmp"]
    sanitize = os.environ.get("CONFGF_SANITIZE", "").strip()
    if sanitize:
        # -O1 and frame pointers: readable sanitizer reports; errors abort, so a report fails CI.
        san = [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
        cxx_flags = ["-O1", "-g", "-fopenmp", "-DNDEBUG", *san]
        link_flags = ["-fopenmp", *san]
    if with_cuda:
        # No --use_fast_math: the kernels are checked against the reference at ~1e-6 relative.
        nvcc_flags = ["-O3", "-DNDEBUG", "--expt-relaxed-constexpr"]
        ext = cpp_extension.CUDAExtension(
            "confgf_fast._C",
            sources + cuda_sources,
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            extra_link_args=link_flags,
        )
    else:
        ext = cpp_extension.CppExtension(
            "confgf_fast._C",
            sources,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    return [ext], {"build_ext": cpp_extension.BuildExtension}


ext_modules, cmdclass = _extensions()

setup(
    name="confgf_fast",
    version="0.1.0",
    description="Fast ConfGF molecular conformer generation: fused CPU/CUDA/Triton Langevin kernels",
    python_requires=">=3.10",
    packages=[*find_packages(include=["confgf_fast", "confgf_fast.*"]), "confgf_fast.kernels"],
    # The Triton kernels live at the top level (kernels/) and install as confgf_fast.kernels.
    package_dir={"confgf_fast.kernels": "kernels"},
    package_data={"confgf_fast": ["weights/*.pt", "weights/*.md"]},
    include_package_data=False,
    install_requires=["torch", "numpy", "rdkit", "tqdm"],
    extras_require={
        "test": ["pytest", "pytest-benchmark", "hypothesis", "triton", "tblite", "scipy"],
        "triton": ["triton"],
        "xtb": ["tblite", "scipy"],  # build-qm9 --xtb
        "train": ["qm9pack"],  # build-qm9 reads QM9 from it (build-drugs downloads the molsets wheel itself)
        "bench": ["matplotlib"],  # bench/probes/plot_quality_nfe.py
    },
    entry_points={"console_scripts": ["confgf-fast = confgf_fast.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
