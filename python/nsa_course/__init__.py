"""nsa_course: the course's reference solutions from Python, through ctypes.

    import nsa_course as nc
    o = nc.cpu.nsa_forward(q, k, v, nc.NSAParams.paper())          # NumPy float32, the C part
    o = nc.cuda.nsa_forward(q, k, v, nc.NSAParams.paper())         # torch bf16 CUDA tensors (import torch first)

nc.cpu holds the C parts (NumPy arrays), nc.cuda the CUDA parts (PyTorch CUDA tensors; importing it
imports torch). Both call build/lib/libnsa_course.so (CMake target nsa_course_shared), found through
$NSA_COURSE_LIB or in the build folder (python/README.md). A bad argument is a TypeError or ValueError
naming it; a call the C API refuses raises NSACourseError with its code, name and detail.
"""
from ._lib import LibraryNotFoundError, NSACourseError, library, library_candidates
from .core import NSAParams, Shape
from .weights import BranchWeights, NSAAttnWeights

__all__ = ["NSAParams", "Shape", "NSACourseError", "LibraryNotFoundError", "NSAAttnWeights", "BranchWeights", "cpu",
           "cuda", "library", "library_candidates"]


def __getattr__(name):
    # nc.cpu needs NumPy and nc.cuda needs torch: each is imported when first used, so that neither is
    # required by the other
    if name in ("cpu", "cuda"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
