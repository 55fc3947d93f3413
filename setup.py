"""Build perceptual_ext._C from csrc/.

CPU kernels are always built (OpenMP, -O3, -march=native unless PERCEPTUAL_EXT_PORTABLE=1).
CUDA kernels are built when the installed torch has CUDA and nvcc is found, or when
PERCEPTUAL_EXT_CUDA=1 forces it (PERCEPTUAL_EXT_CUDA=0 turns them off).
TORCH_CUDA_ARCH_LIST is honoured by torch's BuildExtension.

PERCEPTUAL_EXT_NO_EXTENSION=1 installs the Python package without compiling it (used by `make
install`: `pip install -e` builds in throw-away folders, so the Makefile installs the package this way
and then compiles once with `setup.py build_ext --inplace`, whose objects ninja keeps in build/).
"""
import glob
import os
import shutil
import sysconfig

import torch
from setuptools import setup
from torch.utils import cpp_extension

VERSION = "0.1.0"
ROOT = os.path.dirname(os.path.abspath(__file__))


def _nvcc_found() -> bool:
    home = cpp_extension.CUDA_HOME
    return bool(home and os.path.exists(os.path.join(home, "bin", "nvcc"))) or shutil.which("nvcc") is not None


def _want_cuda() -> bool:
    flag = os.environ.get("PERCEPTUAL_EXT_CUDA", "").strip()
    if flag == "0":
        return False
    if flag == "1":
        if torch.version.cuda is None:
            raise RuntimeError("PERCEPTUAL_EXT_CUDA=1 but the installed torch has no CUDA support")
        if not _nvcc_found():
            raise RuntimeError("PERCEPTUAL_EXT_CUDA=1 but nvcc was not found (set CUDA_HOME)")
        return True
    if flag:
        raise RuntimeError(f"PERCEPTUAL_EXT_CUDA must be 0 or 1, got {flag!r}")
    return torch.version.cuda is not None and _nvcc_found()


def _extension():
    with_cuda = _want_cuda()
    portable = os.environ.get("PERCEPTUAL_EXT_PORTABLE", "0") == "1"
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    # No errno or FP-exception flags are read anywhere: without them, loops with sqrt/division and
    # branch-free selects (the template-matching epilogue) vectorize.
    # -Wno-unknown-pragmas: torch's vectorization headers carry `#pragma unroll` and `#pragma clang`
    # lines that g++ does not know; under -Wall each translation unit would print ~40 such warnings.
    cxx = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-Wno-unknown-pragmas",
           f'-DPERCEPTUAL_EXT_VERSION="{VERSION}"']
    if not portable:
        cxx.append("-march=native")
    define_macros = []
    include_dirs = [os.path.join(ROOT, "csrc")]
    kwargs = dict(extra_link_args=["-fopenmp"])
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        define_macros.append(("PERCEPTUAL_EXT_WITH_CUDA", "1"))
        # cuBLAS/cuSPARSE headers of the pip-installed CUDA toolkit (torch's nvidia-* wheels).
        purelib = sysconfig.get_paths()["purelib"]
        for sub in ("cu13", "cu12"):
            inc = os.path.join(purelib, "nvidia", sub, "include")
            if os.path.isdir(inc):
                include_dirs.append(inc)
        archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "torch-default")
        archs = ",".join(a for a in archs.replace(";", " ").split() if a)
        cxx.append(f'-DPERCEPTUAL_EXT_CUDA_ARCHS="{archs}"')
        nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo",
                f'-DPERCEPTUAL_EXT_VERSION="{VERSION}"']
        return cpp_extension.CUDAExtension(
            "perceptual_ext._C", sources, include_dirs=include_dirs, define_macros=define_macros,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc}, **kwargs)
    return cpp_extension.CppExtension(
        "perceptual_ext._C", sources, include_dirs=include_dirs, define_macros=define_macros,
        extra_compile_args={"cxx": cxx}, **kwargs)


def _ext_modules():
    flag = os.environ.get("PERCEPTUAL_EXT_NO_EXTENSION", "").strip()
    if flag not in ("", "0", "1"):
        raise RuntimeError(f"PERCEPTUAL_EXT_NO_EXTENSION must be 0 or 1, got {flag!r}")
    return [] if flag == "1" else [_extension()]


setup(
    version=VERSION,
    ext_modules=_ext_modules(),
    cmdclass={"build_ext": cpp_extension.BuildExtension},
)
