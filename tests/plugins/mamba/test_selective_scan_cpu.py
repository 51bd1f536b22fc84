"""The fused CPU kernel against the sequential reference: forward, every gradient, layouts,
the fused softplus / D skip / gate, threads, and what happens when it cannot be built or fails
its ABI handshake."""
from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from speechforge_plugins.mamba import selective_scan_cpu as kernel
from speechforge_plugins.mamba.selective_scan import selective_scan_sequential
from speechforge_plugins.mamba.selective_scan_cpu import cpu_kernel_available, selective_scan_cpu

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("CC") or "cc") is None, reason="no C compiler (cc) to build the fused CPU scan"
)

BATCH = 2  # the batch of make_inputs (conftest.py)
SHAPES = [(6, 5), (20, 16)]  # (Din, N): a partial tile with the generic N; a full + partial tile, N = 16
GRAD_NAMES = ("u", "delta", "A", "B", "C", "initial_state")


def outputs_and_grads(scan, inputs: dict[str, torch.Tensor], initial_state: torch.Tensor | None, **kwargs):
    """y, last state, and the gradients of a fixed random weighting of both."""
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    h0 = None if initial_state is None else initial_state.clone().requires_grad_()
    y, last = scan(**leaves, initial_state=h0, **kwargs)
    g = torch.Generator().manual_seed(1)
    loss = (y * torch.randn(y.shape, generator=g)).sum() + (last * torch.randn(last.shape, generator=g)).sum()
    loss.backward()
    grads = {k: v.grad for k, v in leaves.items()}
    grads["initial_state"] = None if h0 is None else h0.grad
    return y.detach(), last.detach(), grads


def assert_matches_sequential(inputs, initial_state=None, atol=1e-4, **kwargs) -> None:
    y_ref, last_ref, grads_ref = outputs_and_grads(selective_scan_sequential, inputs, initial_state)
    y, last, grads = outputs_and_grads(selective_scan_cpu, inputs, initial_state, **kwargs)
    torch.testing.assert_close(y, y_ref, atol=atol, rtol=0)
    torch.testing.assert_close(last, last_ref, atol=atol, rtol=0)
    for name, grad in grads_ref.items():
        torch.testing.assert_close(grads[name], grad, atol=atol, rtol=1e-4, msg=name)


def test_the_kernel_builds_here() -> None:
    assert cpu_kernel_available(), kernel._build_error


@pytest.mark.parametrize("dim, state", SHAPES)
@pytest.mark.parametrize("length", [1, 7, 64, 130])
@pytest.mark.parametrize("with_state", [False, True])
def test_forward_and_gradients_equal_sequential(
    length: int, dim: int, state: int, with_state: bool, make_inputs
) -> None:
    inputs = make_inputs(length, dim, state)
    initial_state = torch.randn(BATCH, dim, state) if with_state else None
    assert_matches_sequential(inputs, initial_state)


@pytest.mark.parametrize("dim, state", SHAPES)
def test_padded_frames_with_zero_delta_leave_the_state_alone(
    dim: int, state: int, assert_each_utterance_alone, make_inputs
) -> None:
    """delta = 0 on padding: each utterance's valid outputs and last state are its own."""
    inputs = make_inputs(70, dim, state)
    lengths = [70, 33]
    valid = torch.arange(70) < torch.tensor(lengths)[:, None]  # (B, L)
    inputs["delta"] = inputs["delta"].masked_fill(~valid[:, None], 0.0)
    assert_matches_sequential(inputs)
    y, last = selective_scan_cpu(**inputs)
    assert_each_utterance_alone(y, last, inputs, lengths)


def test_stable_for_tiny_decays(make_inputs) -> None:
    """delta * |A| up to ~1e3 per frame (decays down to e^-900): finite and exact."""
    inputs = make_inputs(70, 20, 16, delta_shift=6.0, a_scale=100.0)
    y, last = selective_scan_cpu(**inputs)
    assert torch.isfinite(y).all() and torch.isfinite(last).all()
    assert_matches_sequential(inputs, torch.randn(BATCH, 20, 16))


def test_any_layout_is_read_without_copies(make_inputs) -> None:
    """Channel-last views (as the mixer has them) give what contiguous tensors give."""
    inputs = make_inputs(45, 20, 16)
    channel_last = {k: v.transpose(1, 2).contiguous().transpose(1, 2) if k != "A" else v for k, v in inputs.items()}
    xz = torch.cat((inputs["B"], inputs["C"]), dim=1).transpose(1, 2).contiguous()  # (B, L, 2N)
    channel_last["B"], channel_last["C"] = xz[..., :16].transpose(1, 2), xz[..., 16:].transpose(1, 2)
    assert channel_last["delta"].stride(1) == 1 and channel_last["B"].stride(1) == 1
    expected = outputs_and_grads(selective_scan_cpu, inputs, None)
    actual = outputs_and_grads(selective_scan_cpu, channel_last, None)
    torch.testing.assert_close(actual[0], expected[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(actual[1], expected[1], atol=1e-6, rtol=0)
    for name in ("u", "delta", "A", "B", "C"):
        torch.testing.assert_close(actual[2][name], expected[2][name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("padded", [False, True])
def test_fused_softplus_skip_and_gate(padded: bool, make_inputs) -> None:
    """(scan(softplus(delta)) + D u) * silu(z) and all its gradients, D and z included; the
    lowest float as softplus's input marks a padded frame (delta exactly 0)."""
    inputs = make_inputs(50, 20, 16)
    g = torch.Generator().manual_seed(2)
    raw = torch.randn(BATCH, 20, 50, generator=g) * 3
    D, z, h0 = torch.randn(20, generator=g), torch.randn(BATCH, 20, 50, generator=g), torch.randn(BATCH, 20, 16)
    valid = torch.arange(50) < torch.tensor([50, 21])[:, None] if padded else torch.ones(BATCH, 50, dtype=torch.bool)

    def reference(u, delta, A, B, C, D, z, initial_state):
        y, last = selective_scan_sequential(u, F.softplus(delta).masked_fill(~valid[:, None], 0.0), A, B, C, initial_state)
        return (y + u * D[:, None]) * F.silu(z), last

    def fused(u, delta, A, B, C, D, z, initial_state):
        delta = delta.masked_fill(~valid[:, None], torch.finfo(torch.float32).min)
        return selective_scan_cpu(u, delta, A, B, C, initial_state, D=D, z=z, delta_softplus=True)

    inputs.update(delta=raw, D=D, z=z)
    y_ref, last_ref, grads_ref = outputs_and_grads(reference, inputs, h0)
    y, last, grads = outputs_and_grads(fused, inputs, h0)
    torch.testing.assert_close(y, y_ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(last, last_ref, atol=1e-4, rtol=0)
    for name, grad in grads_ref.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-4, rtol=1e-4, msg=name)
    if padded:  # the padded utterance's state is that after its last valid frame
        alone = selective_scan_sequential(
            inputs["u"][1:, :, :21], F.softplus(raw[1:, :, :21]), inputs["A"], inputs["B"][1:, :, :21],
            inputs["C"][1:, :, :21], h0[1:],
        )[1]  # fmt: skip
        torch.testing.assert_close(last[1:], alone, atol=1e-4, rtol=0)


def test_threads_split_the_channels(monkeypatch: pytest.MonkeyPatch, make_inputs) -> None:
    """3 workers over 6 tiles (2 utterances of 40 channels) give what 1 gives."""
    inputs = make_inputs(66, 40, 16)
    h0 = torch.randn(BATCH, 40, 16)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    one = outputs_and_grads(selective_scan_cpu, inputs, h0)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert kernel._library().selective_scan_threads(BATCH, 40, 3) == 3
    three = outputs_and_grads(selective_scan_cpu, inputs, h0)
    torch.testing.assert_close(three[0], one[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(three[1], one[1], atol=1e-6, rtol=0)
    for name in GRAD_NAMES:
        torch.testing.assert_close(three[2][name], one[2][name], atol=1e-5, rtol=1e-5, msg=name)


def test_half_inputs_are_scanned_in_float32(make_inputs) -> None:
    inputs = make_inputs(20)
    y_ref, _ = selective_scan_sequential(**inputs)
    y, last = selective_scan_cpu(**{k: v.bfloat16() for k, v in inputs.items()})
    assert y.dtype == torch.bfloat16 and last.dtype == torch.float32
    torch.testing.assert_close(y.float(), y_ref, atol=0.2, rtol=0.05)


def test_empty_sequence_returns_the_initial_state(make_inputs) -> None:
    inputs = make_inputs(0)
    h0 = torch.randn(BATCH, 6, 5)
    y, last = selective_scan_cpu(**inputs, initial_state=h0)
    assert y.shape == (BATCH, 6, 0)
    torch.testing.assert_close(last, h0)


def test_wrong_shapes_are_named(make_inputs) -> None:
    inputs = make_inputs(9)
    inputs["B"] = inputs["B"][:, :4]
    with pytest.raises(ValueError, match=r"B must have shape \(2, 5, 9\) for u of shape \(2, 6, 9\), got \(2, 4, 9\)"):
        selective_scan_cpu(**inputs)


def test_loading_leaves_denormals_alone() -> None:
    """The library is linked without crtfastmath.o, which would switch flush-to-zero on for
    the whole process."""
    assert cpu_kernel_available()
    assert (torch.tensor([1e-39]) * torch.tensor([0.5])).item() != 0.0


@pytest.fixture
def fresh_build(monkeypatch: pytest.MonkeyPatch):
    """Forget the loaded library for one test (and again after it)."""
    kernel._library.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    kernel._library.cache_clear()


def test_builds_once_into_the_cache_dir(fresh_build: pytest.MonkeyPatch, tmp_path) -> None:
    fresh_build.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cpu_kernel_available()
    built = list((tmp_path / "speechforge" / "mamba").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so", built  # no temporary files left
    stamp = built[0].stat().st_mtime_ns
    kernel._library.cache_clear()
    assert cpu_kernel_available()
    assert built[0].stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_without_a_compiler_it_warns_once_and_reports_unavailable(
    fresh_build: pytest.MonkeyPatch, tmp_path, caplog: pytest.LogCaptureFixture, make_inputs
) -> None:
    fresh_build.setenv("XDG_CACHE_HOME", str(tmp_path))
    fresh_build.setenv("CC", "no-such-compiler-here")
    with caplog.at_level(logging.WARNING, logger=kernel.__name__):
        assert not cpu_kernel_available()
        assert not cpu_kernel_available()
    assert len(caplog.records) == 1
    assert "no-such-compiler-here" in caplog.records[0].getMessage()
    with pytest.raises(RuntimeError, match="could not be built: no C compiler"):
        selective_scan_cpu(**make_inputs(5))


ARGS_SIZE, U_AT, DELTA_AT = ctypes.sizeof(kernel._ScanArgs), kernel._ScanArgs.u.offset, kernel._ScanArgs.delta.offset
HANDSHAKE_MISMATCHES = [  # an edit of the C source, the reason its library is refused
    pytest.param(
        ("#define SELECTIVE_SCAN_ABI_VERSION 1", "#define SELECTIVE_SCAN_ABI_VERSION 2"),
        f"has ABI version 2, selective_scan_cpu.py expects {kernel.ABI_VERSION}",
        id="version",
    ),
    pytest.param(
        ("int64_t threads;", "int64_t threads, added;"),
        f"scan_args is {ARGS_SIZE + 8} bytes in the library, {ARGS_SIZE} in _ScanArgs",
        id="field-added",
    ),
    pytest.param(
        ("const float *u, *delta,", "const float *delta, *u,"),
        f"scan_args.u is at byte {DELTA_AT} in the library, at byte {U_AT} in _ScanArgs",
        id="fields-swapped",
    ),
    pytest.param(
        ("int64_t b, d, t;", "int64_t d, b, t;"),
        f"strides3.b is at byte {kernel._Strides3.d.offset} in the library, at byte 0 in _Strides3",
        id="strides-swapped",
    ),
    pytest.param(
        ("int64_t selective_scan_abi_version(void)", "int64_t selective_scan_abi_version_renamed(void)"),
        "has no ABI handshake: selective_scan_abi_version not exported",
        id="no-handshake",
    ),
]


@pytest.mark.parametrize("edit, reason", HANDSHAKE_MISMATCHES)
def test_a_library_failing_the_abi_handshake_is_refused_with_the_reason(
    fresh_build: pytest.MonkeyPatch,
    tmp_path,
    caplog: pytest.LogCaptureFixture,
    make_inputs,
    edit: tuple[str, str],
    reason: str,
) -> None:
    """A library built from a source whose version or struct layout differs from the ctypes
    mirrors is never called: one warning names the difference and the kernel is unavailable
    (so ``scan: auto`` takes the PyTorch scan)."""
    old, new = edit
    source = kernel.SOURCE.read_text()
    assert source.count(old) == 1, old
    (tmp_path / "edited.c").write_text(source.replace(old, new))
    fresh_build.setattr(kernel, "SOURCE", tmp_path / "edited.c")
    fresh_build.setattr(kernel, "COMPILE_FLAGS", ("-O0", "-fPIC"))  # only the layout matters: a quick build
    fresh_build.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger=kernel.__name__):
        assert not cpu_kernel_available()
        assert not cpu_kernel_available()
    assert len(caplog.records) == 1
    assert "the PyTorch scan is used instead" in caplog.records[0].getMessage()
    assert reason in caplog.records[0].getMessage()
    with pytest.raises(RuntimeError, match=f"could not be built: .*{re.escape(reason)}"):
        selective_scan_cpu(**make_inputs(5))


def test_loading_adds_no_openmp_runtime() -> None:
    """The kernel binds to the OpenMP runtime torch loaded rather than bringing its own."""
    assert cpu_kernel_available()  # built (cached) for the child below
    script = (
        "import torch\n"
        "def runtimes():\n"
        "    with open('/proc/self/maps') as maps:\n"
        "        return {l.split()[-1] for l in maps if 'libgomp' in l or 'libiomp' in l}\n"
        "before = runtimes()\n"
        "from speechforge_plugins.mamba.selective_scan_cpu import cpu_kernel_available\n"
        "assert cpu_kernel_available()\n"
        "print(sorted(runtimes() - before))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_without_openmp_it_builds_with_pthreads(fresh_build: pytest.MonkeyPatch, tmp_path, make_inputs) -> None:
    """A compiler that rejects the OpenMP flags still gives a working kernel (threads: pthreads)."""
    inputs = make_inputs(66, 40, 16)
    expected = outputs_and_grads(selective_scan_cpu, inputs, None)
    kernel._library.cache_clear()
    fresh_build.setenv("XDG_CACHE_HOME", str(tmp_path))
    fresh_build.setattr(kernel, "OPENMP_FLAGS", ("-fno-such-openmp-flag",))
    fresh_build.setattr(torch, "get_num_threads", lambda: 3)
    assert cpu_kernel_available()
    got = outputs_and_grads(selective_scan_cpu, inputs, None)
    torch.testing.assert_close(got[0], expected[0], atol=1e-6, rtol=0)
    for name in GRAD_NAMES:
        torch.testing.assert_close(got[2][name], expected[2][name], atol=1e-5, rtol=1e-5, msg=name)
