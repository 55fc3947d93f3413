"""perceptual_ext: perceptual image losses and template matching with fused C++/CUDA kernels.

Layers (data flows one way): kernels (``_C``) -> ``ops`` -> ``losses`` / ``metrics`` ->
``models`` / ``train`` -> ``cli``.
"""
import torch  # noqa: F401  (loads libtorch before the extension)

try:
    from . import _C
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "perceptual_ext._C could not be loaded. Build it with `make install` (or "
        "`pip install --no-build-isolation -e .`) against the torch you are running: "
        f"{exc}") from exc

__version__ = "0.1.0"


def build_info() -> dict:
    """How the compiled extension was built.

    Returns:
        dict with ``version``, ``torch_version`` (the torch it was compiled against),
        ``cuda_compiled``, ``cuda_version``, ``cuda_arch_list``, ``openmp``, ``num_threads``,
        ``parallel_backend`` and ``cpu_flags``.
    """
    return dict(_C.build_info())


from . import ops  # noqa: E402
from . import losses  # noqa: E402

__all__ = ["build_info", "ops", "losses", "__version__"]
