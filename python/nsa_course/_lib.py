"""The shared library (build/lib/libnsa_course.so) through ctypes: finding it, the C structs, the
prototypes, and one call helper that turns a failed call into NSACourseError.

The library is the solutions' C API as it is (common/attn.h, common/nsa.h and the lesson headers);
nothing here computes anything. It is loaded on first use, so that `import nsa_course` and the
argument checks work before anything is built.
"""
import ctypes
import os
import threading
from ctypes import POINTER, c_double, c_float, c_int, c_long, c_size_t, c_void_p

LIBRARY_NAME = "libnsa_course.so"
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class NSACourseError(RuntimeError):
    """A call into the C API returned an error code.

    code:     the attn_status value (ATTN_ERR_BAD_ARGUMENT is 6, ...)
    name:     its name in C, from attn_status_name ("ATTN_ERR_BAD_ARGUMENT")
    message:  its fixed text, from attn_strerror
    detail:   what the function said about this call, from attn_error_detail (the values that were wrong)
    function: the C function that failed
    """

    def __init__(self, function, code, name, message, detail):
        self.function, self.code, self.name, self.message, self.detail = function, code, name, message, detail
        text = f"{function} failed with {name} ({code}): {message}"
        super().__init__(text + (f": {detail}" if detail else ""))


class LibraryNotFoundError(OSError):
    """The shared library is not where the package looks for it."""


class AttnShape(ctypes.Structure):
    """attn_shape of common/attn.h."""
    _fields_ = [("B", c_int), ("M", c_int), ("N", c_int), ("H", c_int), ("G", c_int), ("D", c_int),
                ("scale", c_float), ("causal", c_int)]


class AttnNsaParams(ctypes.Structure):
    """attn_nsa_params of common/nsa.h."""
    _fields_ = [("l", c_int), ("d", c_int), ("l_sel", c_int), ("n", c_int), ("w", c_int), ("mode", c_int),
                ("heads_share_selection", c_int)]


class NsaWeightsStats(ctypes.Structure):
    """nsa_weights_stats of solutions/10_fused_nsa/fused_nsa.h."""
    _fields_ = [("mean", c_double), ("std", c_double), ("min", c_double), ("max", c_double),
                ("entropy", c_double), ("sparsity", c_double), ("gate_mean", c_double)]


_S, _P, _V = POINTER(AttnShape), POINTER(AttnNsaParams), c_void_p
# Every pointer argument travels as a plain address (c_void_p): NumPy's .ctypes.data and torch's
# .data_ptr() are integers, and the checks in Python have made sure each points at what the C side reads.
_PROTOTYPES = {
    # common/attn.h and common/nsa.h
    "attn_strerror": (ctypes.c_char_p, [c_int]),
    "attn_status_name": (ctypes.c_char_p, [c_int]),
    "attn_error_detail": (ctypes.c_char_p, []),
    "attn_clear_error": (None, []),
    "attn_nsa_paper_defaults": (AttnNsaParams, []),
    "attn_nsa_mean_pool": (AttnNsaParams, []),
    "attn_nsa_check": (c_int, [_P]),
    # lesson 03
    "flash_blocked_cpu": (c_int, [_S, _V, _V, _V, _V, _V, c_int, c_int]),
    "flash_attention_cuda": (c_int, [_S, _V, _V, _V, _V, _V, _V]),
    # lesson 05
    "window_attention_cpu": (c_int, [_S, c_int, _V, _V, _V, _V, _V]),
    "window_attention_cuda": (c_int, [_S, c_int, _V, _V, _V, _V, _V, _V]),
    # lesson 07
    "nsa_cmp_counts": (c_int, [c_long, c_long, _P, POINTER(c_long), POINTER(c_long)]),
    "nsa_compress_cpu": (c_int, [_S, _P, _V, _V, _V, _V]),
    "nsa_cmp_attention_cpu": (c_int, [_S, _P, _V, _V, _V, _V, _V]),
    "nsa_compress_cuda": (c_int, [_S, _P, _V, _V, _V, _V, _V]),
    "nsa_cmp_attention_cuda": (c_int, [_S, _P, _V, _V, _V, _V, _V, _V]),
    # lesson 08
    "nsa_block_scores_cpu": (c_int, [_S, _P, _V, _V, _V, _V]),
    "nsa_topn_cpu": (c_int, [_S, _P, _V, _V]),
    "nsa_select_cpu": (c_int, [_S, _P, _V, _V, _V, _V]),
    "nsa_select_cuda": (c_int, [_S, _P, _V, _V, _V, _V, _V]),
    # lesson 09
    "nsa_selection_check": (c_int, [_S, _P, _V]),
    "nsa_selected_attention_cpu": (c_int, [_S, _P, _V, _V, _V, _V, _V, _V]),
    "nsa_selected_attention_cuda": (c_int, [_S, _P, _V, _V, _V, _V, _V, _V, _V]),
    # lesson 10
    "nsa_forward_cpu": (c_int, [_S, _P] + [_V] * 14),
    "nsa_forward_workspace_bytes": (c_size_t, [_S, _P]),
    "nsa_forward_cuda": (c_int, [_S, _P] + [_V] * 14 + [_V, c_size_t, _V]),
    "nsa_weights_cpu": (c_int, [_S, _P, c_int, c_int, c_int] + [_V] * 9),
    "nsa_cmp_weights_to_keys_cpu": (c_int, [_S, _P, _V, _V]),
    "nsa_weights_summary": (c_int, [_S, _P, c_int, c_int, c_int, _V, _V, POINTER(NsaWeightsStats)]),
    "nsa_weights_check": (c_int, [_S, _P, c_int, c_int, c_int, _V, _V, POINTER(c_double)]),
    "nsa_weights_cuda": (c_int, [_S, _P, c_int, c_int, c_int] + [_V] * 9 + [_V, c_size_t, _V]),
    "nsa_cmp_weights_to_keys_cuda": (c_int, [_S, _P, _V, _V, _V]),
}

_lib = None
_lock = threading.Lock()


def library_candidates():
    """Where the library is looked for, in order: $NSA_COURSE_LIB (the file itself), then
    <repository>/$ATTN_BUILD_DIR/lib (when set) and <repository>/build/lib."""
    out = []
    if os.environ.get("NSA_COURSE_LIB"):
        out.append(os.environ["NSA_COURSE_LIB"])
    if os.environ.get("ATTN_BUILD_DIR"):
        out.append(os.path.join(_ROOT, os.environ["ATTN_BUILD_DIR"], "lib", LIBRARY_NAME))
    out.append(os.path.join(_ROOT, "build", "lib", LIBRARY_NAME))
    return out


def library():
    """The loaded library (ctypes.CDLL), with every prototype set; loaded on the first call."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = library_candidates()
        path = next((p for p in tried if os.path.isfile(p)), None)
        if path is None:
            raise LibraryNotFoundError(
                f"{LIBRARY_NAME} not found (looked at: {', '.join(tried)}). Build it with "
                f"`cmake --build build --target nsa_course_shared` (after `./course test` or a configure of "
                f"build/), or point NSA_COURSE_LIB at the file.")
        lib = ctypes.CDLL(path)
        for name, (restype, argtypes) in _PROTOTYPES.items():
            fn = getattr(lib, name)  # a missing symbol is an AttributeError naming it: a library of another version
            fn.restype, fn.argtypes = restype, argtypes
        lib.path = path
        _lib = lib
        return lib


def status_name(code):
    return library().attn_status_name(code).decode()


def strerror(code):
    return library().attn_strerror(code).decode()


def call(name, *args):
    """Call C function `name`; raise NSACourseError with its code, name, text and detail unless it
    returns ATTN_OK (0). The detail is per thread in C, and so is this call: it is cleared first, so
    that it is this call's."""
    lib = library()
    lib.attn_clear_error()
    rc = getattr(lib, name)(*args)
    if rc != 0:
        raise NSACourseError(name, rc, status_name(rc), strerror(rc), lib.attn_error_detail().decode())
    return rc


def ref(struct):
    return ctypes.byref(struct)
