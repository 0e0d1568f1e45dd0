"""Argument checks shared by the NumPy and the torch wrappers.

The C functions take raw pointers and trust them: a wrong shape, dtype or stride there reads or
writes the wrong memory without a word. So every array is checked here first, and each problem is a
TypeError (not an array or tensor, or the wrong dtype) or a ValueError (shape, device, contiguity,
alignment) that names the argument, what was expected and what was given.

Sizes are named by letter (B, M, N, H, G, D, NC, L, n, ...): the first argument that has a letter
binds it, the later ones must agree, and a message says which argument bound the size it disagrees with.
"""
import ctypes


class Dims:
    """Sizes by letter, each with the argument that set it."""

    def __init__(self, **fixed):
        # fixed: sizes known before any argument (NC from l, d and N, say): letter -> (value, reason)
        self.values = dict(fixed)

    def __getitem__(self, letter):
        return self.values[letter][0]

    def bind(self, letter, value, source):
        self.values.setdefault(letter, (value, source))

    def check(self, name, shape, layout):
        shape = tuple(int(s) for s in shape)
        expected = "[" + ", ".join(layout) + "]"
        if len(shape) != len(layout):
            raise ValueError(f"{name}: expected a {len(layout)}-dimensional array {expected}, got shape {shape}")
        for letter, got in zip(layout, shape):
            if letter in self.values and self.values[letter][0] != got:
                known = tuple(self.values[x][0] if x in self.values else x for x in layout)
                value, source = self.values[letter]
                raise ValueError(f"{name}: expected shape {expected} = ({', '.join(str(k) for k in known)}), got "
                                 f"{shape}: {letter} is {value} ({source})")
        for letter, got in zip(layout, shape):
            self.bind(letter, got, f"from {name}")


# ---------------------------------------------------------------- NumPy (the C parts: host memory)

_DUMMY = ctypes.create_string_buffer(16)  # the address passed for an empty array: the C side never reads it


def np_array(name, x, layout, dims, dtype="float32"):
    """The address of NumPy array x after checking it: ndarray, dtype, shape `layout` (letters bound in
    dims), C-contiguous and aligned."""
    import numpy as np
    dt = np.dtype(dtype)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of {dt.name} [{', '.join(layout)}], got {type(x).__name__}")
    if x.dtype != dt:
        raise TypeError(f"{name}: expected dtype {dt.name}, got {x.dtype} (x.astype(np.{dt.name}) converts)")
    dims.check(name, x.shape, layout)
    if not x.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array, got strides {x.strides} "
                         f"(np.ascontiguousarray makes a contiguous copy)")
    if not x.flags.aligned:
        raise ValueError(f"{name}: expected an array aligned to its {dt.name} elements")
    return x.ctypes.data if x.size else ctypes.addressof(_DUMMY)


def address(x):
    """The address of a NumPy array the wrappers allocated (an output), non-NULL even when it is empty."""
    return x.ctypes.data if x.size else ctypes.addressof(_DUMMY)


def np_optional(name, x, layout, dims, dtype="float32"):
    return None if x is None else np_array(name, x, layout, dims, dtype)


# ---------------------------------------------------------------- torch (the CUDA parts: device memory)

def torch_tensor(name, x, layout, dims, dtype, device, align):
    """The device address of torch tensor x after checking it: a torch.Tensor of `dtype` on `device` (a
    CUDA device; None: x's own, which must be a CUDA one), shape `layout`, contiguous, its data aligned
    to `align` bytes. Returns (address, device)."""
    import torch
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of {dtype} [{', '.join(layout)}] on a CUDA device, got "
                        f"{type(x).__name__}")
    if x.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got {x.dtype}")
    if device is None:
        if x.device.type != "cuda":
            raise ValueError(f"{name}: expected a CUDA tensor, got one on {x.device} (x.cuda() moves it)")
        device = x.device
    elif x.device != device:
        raise ValueError(f"{name}: expected a tensor on {device} (where the first tensor argument is), got one on "
                         f"{x.device}")
    dims.check(name, x.shape, layout)
    if not x.is_contiguous():
        raise ValueError(f"{name}: expected a contiguous tensor, got strides {tuple(x.stride())} "
                         f"(x.contiguous() makes a contiguous copy)")
    if x.numel() and x.data_ptr() % align:
        raise ValueError(f"{name}: expected data aligned to {align} bytes, got an address {x.data_ptr() % align} "
                         f"bytes past that (a view into a larger tensor; x.clone() gives it storage of its own)")
    return (x.data_ptr() if x.numel() else _device_dummy(device)), device


_DEVICE_DUMMIES = {}


def _device_dummy(device):
    """A 16-byte device buffer per device: the address passed for an empty tensor (compressed keys with
    NC = 0, say), which the C side requires to be non-NULL and never reads."""
    import torch
    if device not in _DEVICE_DUMMIES:
        _DEVICE_DUMMIES[device] = torch.empty(16, dtype=torch.uint8, device=device)
    return _DEVICE_DUMMIES[device].data_ptr()
