"""The selective scan fused into one C kernel for CPU tensors, forward and backward.

The PyTorch scans (``selective_scan.py``) spend their time in element-wise kernels: every
operation of the recurrence is a pass over a (B, Din, N) tensor per frame, or over a larger
one per chunk. ``csrc/selective_scan_cpu.c`` instead runs the recurrence frame after frame
with each channel's N states in a small local array, vectorised over 16 channels at a time:
inputs are read once, the output written once, nothing is dispatched per frame. Channels are
split over ``torch.get_num_threads()`` pthreads. As mamba-ssm's ``selective_scan_fn``, it can
also apply softplus to delta and add the D skip and SiLU(z) gate on the way, and it reads any
memory layout, so the mixer hands it its channel-last tensors without a copy.

The C file is compiled on first use with the system C compiler (``$CC``, else ``cc``) into
``$XDG_CACHE_HOME/speechforge/mamba/`` (``~/.cache/...`` when unset), named by a hash of the
source, the compiler, its flags and the CPU, and loaded with ctypes. Before its first call the
library must pass a handshake (:func:`_check_abi`): its ABI version is :data:`ABI_VERSION`, and
its ``scan_args`` and ``strides3`` have the sizes and field offsets of the ctypes mirrors
below, so a struct edited on one side only is refused instead of read at the wrong offsets.
When any of that fails (no compiler, a failed build, a refused library),
:func:`cpu_kernel_available` logs one warning with the reason and returns False, and
``scan: auto`` keeps the chunked PyTorch scan.

Training: the forward stores the state at the start of every ``CHECKPOINT_EVERY`` frames
(1/64 of the B * Din * N * L states); the backward recomputes one segment's states from its
checkpoint and runs the reverse-time adjoint over it, giving the gradients of every input.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "selective_scan_cpu.c"
# -ffast-math at compile time only: linked with -shared, gcc < 13 would add crtfastmath.o,
# whose constructor turns on flush-to-zero for the whole process (torch included).
COMPILE_FLAGS = ("-O3", "-march=native", "-ffast-math", "-fPIC")
LINK_FLAGS = ("-shared",)
LIBS = ("-lm", "-lpthread")
# Linked by soname (libgomp.so.1), the library binds to the OpenMP runtime torch has loaded, so
# the scan shares torch's worker threads instead of adding its own beside them.
OPENMP_FLAGS = ("-fopenmp",)
CHECKPOINT_EVERY = 64  # frames between stored states (the backward recomputes the rest)
ABI_VERSION = 1  # SELECTIVE_SCAN_ABI_VERSION of the C file: bumped with it

_build_error: str | None = None


class _Strides3(ctypes.Structure):
    _fields_ = [("b", ctypes.c_int64), ("d", ctypes.c_int64), ("t", ctypes.c_int64)]


class _ScanArgs(ctypes.Structure):
    """``scan_args`` of the C file, field by field (checked against the library at load)."""

    _fields_ = [
        *((name, ctypes.c_int64) for name in ("batch", "din", "nstate", "len", "seg", "softplus", "threads")),
        *((name, ctypes.c_void_p) for name in ("u", "delta", "z", "A", "B", "C", "D", "h0")),
        *((name, _Strides3) for name in ("su", "sdelta", "sz")),
        *((name, ctypes.c_int64) for name in ("sB_b", "sB_t", "sC_b", "sC_t")),
        *((name, ctypes.c_void_p) for name in ("out", "y", "hlast", "ckpt")),
        ("sout", _Strides3),
        *((name, ctypes.c_void_p) for name in ("dout", "dlast")),
        ("sdout", _Strides3),
        *((name, ctypes.c_void_p) for name in ("du", "ddelta", "dz")),
        *((name, _Strides3) for name in ("sdu", "sddelta", "sdz")),
        *((name, ctypes.c_void_p) for name in ("dA_rows", "dD_rows", "dB_parts", "dC_parts", "dh0")),
    ]


def cache_dir() -> Path:
    """Where built kernels are kept: ``$XDG_CACHE_HOME/speechforge/mamba``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "speechforge" / "mamba"


def _cpu_signature() -> str:
    """What ``-march=native`` compiles for: the CPU flags (Linux), else the processor name."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}: {done.stderr.strip()[-2000:]}")


def _build() -> ctypes.CDLL:
    """Compiles the kernel unless a build of this source and these flags is cached; loads it.
    With OpenMP when the compiler has it, else with pthreads."""
    compiler = shutil.which(os.environ.get("CC") or "cc")
    if compiler is None:
        raise RuntimeError(f"no C compiler: {os.environ.get('CC') or 'cc'!r} is not on PATH")
    try:
        target = _compile(compiler, OPENMP_FLAGS)
    except RuntimeError as err:
        log.info("building the fused CPU selective scan without OpenMP: %s", err)
        target = _compile(compiler, ())
    lib = ctypes.CDLL(str(target))
    _check_abi(lib, target)
    lib.selective_scan_threads.argtypes = [ctypes.c_int64] * 3
    lib.selective_scan_threads.restype = ctypes.c_int64
    lib.selective_scan_tile.argtypes = []
    lib.selective_scan_tile.restype = ctypes.c_int64
    for name in ("selective_scan_forward", "selective_scan_backward"):
        getattr(lib, name).argtypes = [ctypes.POINTER(_ScanArgs)]
        getattr(lib, name).restype = ctypes.c_int
    return lib


def _check_abi(lib: ctypes.CDLL, path: Path) -> None:
    """Raises RuntimeError, naming the first difference, unless the library at ``path`` has
    :data:`ABI_VERSION` and lays out ``strides3`` and ``scan_args`` as :class:`_Strides3` and
    :class:`_ScanArgs` do: the same size and every field at the same offset."""
    names = ("selective_scan_abi_version", "selective_scan_sizeof", "selective_scan_offsetof")
    missing = [name for name in names if not hasattr(lib, name)]
    if missing:  # built from a source before the handshake
        raise RuntimeError(f"{path} has no ABI handshake: {', '.join(missing)} not exported")
    version, sizeof, offsetof = (getattr(lib, name) for name in names)
    version.argtypes, version.restype = [], ctypes.c_int64
    sizeof.argtypes, sizeof.restype = [ctypes.c_char_p], ctypes.c_int64
    offsetof.argtypes, offsetof.restype = [ctypes.c_char_p, ctypes.c_char_p], ctypes.c_int64
    if version() != ABI_VERSION:
        raise RuntimeError(f"{path} has ABI version {version()}, selective_scan_cpu.py expects {ABI_VERSION}")
    for c_name, mirror in (("strides3", _Strides3), ("scan_args", _ScanArgs)):
        size, expected = sizeof(c_name.encode()), ctypes.sizeof(mirror)
        if size != expected:
            raise RuntimeError(f"{path}: {c_name} is {size} bytes in the library, {expected} in {mirror.__name__}")
        for field, _ in mirror._fields_:
            offset, expected = offsetof(c_name.encode(), field.encode()), getattr(mirror, field).offset
            if offset != expected:
                where = "is not in the library" if offset < 0 else f"is at byte {offset} in the library"
                raise RuntimeError(f"{path}: {c_name}.{field} {where}, at byte {expected} in {mirror.__name__}")


def _compile(compiler: str, extra: tuple[str, ...]) -> Path:
    """The cached shared library built with ``extra`` flags (compile and link), building it first
    when missing."""
    compile_flags, link_flags = COMPILE_FLAGS + extra, LINK_FLAGS + extra
    flags = " ".join(compile_flags + link_flags + LIBS)
    key = hashlib.sha256(
        b"\0".join([SOURCE.read_bytes(), compiler.encode(), flags.encode(), platform.machine().encode(),
                    _cpu_signature().encode()])
    ).hexdigest()[:16]  # fmt: skip
    target = cache_dir() / f"selective_scan_cpu-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
            obj, lib = os.path.join(tmp, "scan.o"), os.path.join(tmp, "scan.so")
            _run([compiler, *compile_flags, "-c", str(SOURCE), "-o", obj])
            _run([compiler, *link_flags, obj, "-o", lib, *LIBS])
            os.replace(lib, target)  # atomic: concurrent builds each write their own temp dir
    return target


@functools.cache
def _library() -> ctypes.CDLL | None:
    global _build_error
    try:
        return _build()
    except Exception as err:  # no compiler, failed build, unwritable cache, unloadable or refused library
        _build_error = str(err)
        log.warning("the fused CPU selective scan is unavailable (the PyTorch scan is used instead): %s", err)
        return None


def cpu_kernel_available() -> bool:
    """True when the fused CPU kernel is built and loaded (building it on the first call).
    On failure logs one warning and returns False."""
    return _library() is not None



def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _strides(t: Tensor | None) -> _Strides3:
    return _Strides3(0, 0, 0) if t is None else _Strides3(*t.stride())


def _args(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
    h0: Tensor | None, softplus: bool,
) -> _ScanArgs:  # fmt: skip
    """The inputs' part of ``scan_args``; see :class:`SelectiveScanCPU` for the layouts."""
    batch, dim, length = u.shape
    threads = _library().selective_scan_threads(batch, dim, torch.get_num_threads())
    return _ScanArgs(
        batch=batch, din=dim, nstate=A.size(1), len=length, seg=CHECKPOINT_EVERY, softplus=int(softplus),
        threads=threads, u=_ptr(u), delta=_ptr(delta), z=_ptr(z), A=_ptr(A), B=_ptr(B), C=_ptr(C), D=_ptr(D),
        h0=_ptr(h0), su=_strides(u), sdelta=_strides(delta), sz=_strides(z), sB_b=B.stride(0), sB_t=B.stride(2),
        sC_b=C.stride(0), sC_t=C.stride(2),
    )  # fmt: skip


def _check(rc: int, what: str) -> None:
    if rc != 0:
        reason = {1: "out of memory"}.get(rc, f"error {rc}")
        raise RuntimeError(f"fused CPU selective scan, {what}: {reason}")


def _forward(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
    h0: Tensor | None, softplus: bool, for_backward: bool,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:  # fmt: skip
    """Runs the forward kernel. Returns out (B, Din, L) in delta's memory layout, the last
    state (B, Din, N) and, for the backward, the checkpoints and, when z is given, the scan
    output before D and z (both in the kernel's tile order)."""
    batch, dim, length = u.shape
    nstate = A.size(1)
    out = torch.empty_like(delta)  # (B, Din, L), delta's layout: (B, L, Din) memory in the mixer
    last = u.new_empty(batch, dim, nstate)
    tile = _library().selective_scan_tile()
    tiles = batch * -(-dim // tile)
    ckpt = u.new_empty(tiles, -(-length // CHECKPOINT_EVERY), nstate, tile) if for_backward else None
    y = u.new_empty(tiles, length, tile) if for_backward and z is not None else None
    args = _args(u, delta, A, B, C, D, z, h0, softplus)
    args.out, args.sout, args.y, args.hlast, args.ckpt = _ptr(out), _strides(out), _ptr(y), _ptr(last), _ptr(ckpt)
    _check(_library().selective_scan_forward(ctypes.byref(args)), "forward")
    return out, last, ckpt, y


class SelectiveScanCPU(torch.autograd.Function):
    """Autograd for the fused kernel. Inputs float32: u, delta, z (B, Din, L) in any layout;
    A (Din, N) and D (Din) contiguous; B, C (B, N, L) with the N states adjacent (stride 1);
    h0 (B, Din, N) contiguous; D, z, h0 may be None."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, h0, softplus: bool):
        out, last, ckpt, y = _forward(u, delta, A, B, C, D, z, h0, softplus, for_backward=True)
        ctx.save_for_backward(u, delta, A, B, C, D, z, ckpt, y)
        ctx.softplus, ctx.has_h0 = softplus, h0 is not None
        return out, last

    @staticmethod
    @once_differentiable
    def backward(ctx, dout: Tensor, dlast: Tensor):
        u, delta, A, B, C, D, z, ckpt, y = ctx.saved_tensors
        batch, dim, length = u.shape
        nstate = A.size(1)
        args = _args(u, delta, A, B, C, D, z, None, ctx.softplus)
        dout, dlast = dout.float(), dlast.float().contiguous()
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dz = None if z is None else torch.empty_like(delta)  # delta's layout, as out
        dA_rows = u.new_empty(batch, dim, nstate)  # per row: summed over the batch below
        dD_rows = None if D is None else u.new_empty(batch, dim)
        dB_parts = u.new_zeros(args.threads, batch, length, nstate)  # per thread: summed below
        dC_parts = u.new_zeros(args.threads, batch, length, nstate)
        dh0 = u.new_empty(batch, dim, nstate) if ctx.has_h0 else None
        args.ckpt, args.y, args.dout, args.sdout, args.dlast = _ptr(ckpt), _ptr(y), _ptr(dout), _strides(dout), _ptr(dlast)
        args.du, args.ddelta, args.dz = _ptr(du), _ptr(ddelta), _ptr(dz)
        args.sdu, args.sddelta, args.sdz = _strides(du), _strides(ddelta), _strides(dz)
        args.dA_rows, args.dD_rows, args.dh0 = _ptr(dA_rows), _ptr(dD_rows), _ptr(dh0)
        args.dB_parts, args.dC_parts = _ptr(dB_parts), _ptr(dC_parts)
        _check(_library().selective_scan_backward(ctypes.byref(args)), "backward")
        dB = dB_parts.sum(0).transpose(1, 2)  # (B, N, L)
        dC = dC_parts.sum(0).transpose(1, 2)  # (B, N, L)
        dD = None if D is None else dD_rows.sum(0)
        return du, ddelta, dA_rows.sum(0), dB, dC, dD, dz, dh0, None


def selective_scan_cpu(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    initial_state: Tensor | None = None,
    *,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_softplus: bool = False,
) -> tuple[Tensor, Tensor]:
    """The scan of :func:`~speechforge_plugins.mamba.selective_scan.selective_scan_sequential`
    by the fused CPU kernel, differentiable in every input; with ``D``, ``z`` and
    ``delta_softplus`` also the surroundings mamba-ssm's ``selective_scan_fn`` fuses.

    Args:
        u, delta: (B, Din, L); A: (Din, N); B, C: (B, N, L); CPU tensors of any float dtype and
            layout.
        initial_state: (B, Din, N), zeros when None.
        D: (Din,) or None: adds ``D * u`` to the scan output.
        z: (B, Din, L) or None: multiplies the result by ``silu(z)``.
        delta_softplus: ``delta`` holds the pre-activation; the scan uses ``softplus(delta)``,
            taken as exactly 0 below -88 (so the lowest float marks a padded frame).
    Returns: ``(scan + D u) * silu(z)`` (B, Din, L) in the dtype of u, and the last state
    (B, Din, N) in float32.
    Raises RuntimeError when the kernel could not be built (see :func:`cpu_kernel_available`).
    """
    batch, dim, length = u.shape
    nstate = A.size(1)
    expected = {"u": (u, (batch, dim, length)), "delta": (delta, (batch, dim, length)), "A": (A, (dim, nstate)),
                "B": (B, (batch, nstate, length)), "C": (C, (batch, nstate, length)), "D": (D, (dim,)),
                "z": (z, (batch, dim, length)), "initial_state": (initial_state, (batch, dim, nstate))}  # fmt: skip
    for name, (t, shape) in expected.items():
        if t is None:
            continue
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} for u of shape {tuple(u.shape)}, got {tuple(t.shape)}")
        if t.device.type != "cpu":
            raise ValueError(f"the fused CPU scan needs CPU tensors, got {name} on {t.device}")
    if not cpu_kernel_available():
        raise RuntimeError(f"the fused CPU selective scan could not be built: {_build_error}")
    dtype = u.dtype
    if length == 0:
        state = u.new_zeros(batch, dim, nstate) if initial_state is None else initial_state
        return u.new_zeros(u.shape), state.float()

    def states_adjacent(t: Tensor) -> Tensor:  # (B, N, L) with stride 1 along N
        t = t.float()
        return t if t.stride(1) == 1 or t.size(1) == 1 else t.transpose(1, 2).contiguous().transpose(1, 2)

    inputs = (
        u.float(),
        delta.float(),
        A.float().contiguous(),
        states_adjacent(B),
        states_adjacent(C),
        None if D is None else D.float().contiguous(),
        None if z is None else z.float(),
        None if initial_state is None else initial_state.float().contiguous(),
    )
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        out, last = SelectiveScanCPU.apply(*inputs, delta_softplus)
    else:
        out, last, _, _ = _forward(*inputs, delta_softplus, for_backward=False)
    return out.to(dtype), last
