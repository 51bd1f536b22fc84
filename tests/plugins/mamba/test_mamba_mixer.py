"""The Mamba layer: initialisation, scans, streaming, padding, and the mamba-ssm call glue."""
from __future__ import annotations

import math
import os
import shutil

import pytest
import torch
import torch.nn.functional as F

from speechforge_plugins.mamba import mamba_mixer
from speechforge_plugins.mamba import selective_scan_cpu as kernel
from speechforge_plugins.mamba.mamba_mixer import MambaMixer
from speechforge_plugins.mamba.selective_scan import selective_scan_sequential

D_MODEL = 24
needs_cc = pytest.mark.skipif(
    shutil.which(os.environ.get("CC") or "cc") is None, reason="no C compiler (cc) to build the fused CPU scan"
)


def make_mixer(**kwargs) -> MambaMixer:
    torch.manual_seed(0)
    return MambaMixer(D_MODEL, **kwargs)


def test_parameters_are_mamba_ssm_names_and_shapes() -> None:
    mixer = make_mixer()
    shapes = {name: tuple(p.shape) for name, p in mixer.state_dict().items()}
    assert shapes == {
        "A_log": (48, 16),
        "D": (48,),
        "in_proj.weight": (96, 24),
        "conv1d.weight": (48, 1, 4),
        "conv1d.bias": (48,),
        "x_proj.weight": (2 + 32, 48),
        "dt_proj.weight": (48, 2),
        "dt_proj.bias": (48,),
        "out_proj.weight": (24, 48),
    }
    assert mixer.dt_rank == math.ceil(D_MODEL / 16)


def test_standard_initialisation() -> None:
    mixer = make_mixer(dt_min=1e-3, dt_max=1e-1)
    assert torch.equal(mixer.A_log, torch.log(torch.arange(1, 17.0)).repeat(48, 1))  # A = -(1..16)
    assert torch.equal(mixer.D, torch.ones(48))
    dt = F.softplus(mixer.dt_proj.bias)  # the bias is softplus⁻¹ of the initial dt
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    assert dt.log().std() > 0.5  # spread log-uniformly, not a constant
    bound = mixer.dt_rank**-0.5
    assert mixer.dt_proj.weight.abs().max() <= bound


def reference_mixer(mixer: MambaMixer, x: torch.Tensor) -> torch.Tensor:
    """The layer written out channels-first with ``F.conv1d``, as mamba-ssm's reference path."""
    h, z = mixer.in_proj(x).transpose(1, 2).chunk(2, dim=1)  # (B, Din, L) each
    length = x.size(1)
    u = F.silu(F.conv1d(h, mixer.conv1d.weight, mixer.conv1d.bias, padding=mixer.d_conv - 1, groups=mixer.d_inner))
    u = u[..., :length]  # the causal outputs
    dt, B, C = mixer.x_proj(u.transpose(1, 2)).split([mixer.dt_rank, mixer.d_state, mixer.d_state], dim=-1)
    delta = F.softplus(mixer.dt_proj(dt)).transpose(1, 2)  # (B, Din, L)
    A = -torch.exp(mixer.A_log)
    y, _ = selective_scan_sequential(u, delta, A, B.transpose(1, 2), C.transpose(1, 2))
    y = (y + u * mixer.D[:, None]) * F.silu(z)
    return mixer.out_proj(y.transpose(1, 2))


@pytest.mark.parametrize("scan", ["auto", "chunked"])
@pytest.mark.parametrize("length,d_conv", [(29, 4), (2, 4), (9, 1)])
def test_layer_equals_the_channels_first_reference(scan: str, length: int, d_conv: int) -> None:
    mixer = make_mixer(scan=scan, chunk_size=8, d_conv=d_conv)
    x = torch.randn(2, length, D_MODEL)
    with torch.no_grad():
        torch.testing.assert_close(mixer(x)[0], reference_mixer(mixer, x), atol=1e-5, rtol=1e-4)
    grads = torch.autograd.grad(mixer(x)[0].square().sum(), mixer.conv1d.weight)[0]
    expected = torch.autograd.grad(reference_mixer(mixer, x).square().sum(), mixer.conv1d.weight)[0]
    torch.testing.assert_close(grads, expected, atol=1e-4, rtol=1e-4)


def test_chunked_and_sequential_scans_agree() -> None:
    chunked = make_mixer(scan="chunked", chunk_size=8)
    sequential = make_mixer(scan="sequential")
    sequential.load_state_dict(chunked.state_dict())
    x = torch.randn(2, 29, D_MODEL)
    torch.testing.assert_close(chunked(x)[0], sequential(x)[0], atol=1e-5, rtol=0)


def test_valid_frames_ignore_padding_content() -> None:
    mixer = make_mixer(chunk_size=4)
    x = torch.randn(2, 13, D_MODEL)
    valid = torch.arange(13) < torch.tensor([13, 6])[:, None]
    noisy = torch.where(valid[..., None], x, torch.randn_like(x) * 100)
    out, _ = mixer(x, valid)
    out_noisy, _ = mixer(noisy, valid)
    torch.testing.assert_close(out_noisy, out, atol=1e-6, rtol=0)
    assert torch.equal(out[1, 6:], torch.zeros(7, D_MODEL))
    torch.testing.assert_close(out[1:, :6], mixer(x[1:, :6])[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("pieces", [(1,) * 10, (3, 3, 4), (2, 1, 7)])
def test_streaming_equals_whole_utterance(pieces: tuple[int, ...]) -> None:
    mixer = make_mixer(chunk_size=4)
    x = torch.randn(2, sum(pieces), D_MODEL)
    full, _ = mixer(x)
    state = (torch.zeros(2, 48, 3), torch.zeros(2, 48, 16))
    outs, start = [], 0
    for n in pieces:
        out, state = mixer(x[:, start : start + n], None, state)
        outs.append(out)
        start += n
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-5, rtol=0)
    assert state[0].shape == (2, 48, 3) and state[1].shape == (2, 48, 16)


def spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Counts the mixer's calls of one of its scan functions."""
    calls, original = [], getattr(mamba_mixer, name)
    monkeypatch.setattr(mamba_mixer, name, lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def forward_backward(mixer: MambaMixer, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, dict]:
    mixer.zero_grad()
    out, _ = mixer(x, valid)
    (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
    return out.detach(), {name: p.grad.clone() for name, p in mixer.named_parameters()}


@needs_cc
def test_auto_runs_the_fused_cpu_kernel_in_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """``scan: auto`` on CPU takes the kernel (softplus, D skip and gate fused) and trains
    like the reference: same output and parameter gradients on a padded batch."""
    auto = make_mixer()
    sequential = make_mixer(scan="sequential")
    sequential.load_state_dict(auto.state_dict())
    x = torch.randn(2, 37, D_MODEL)
    valid = torch.arange(37) < torch.tensor([37, 20])[:, None]
    calls = spy(monkeypatch, "selective_scan_cpu")
    out, grads = forward_backward(auto, x, valid)
    assert calls == [1]
    out_ref, grads_ref = forward_backward(sequential, x, valid)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=0)
    for name, grad in grads_ref.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-4, rtol=1e-4, msg=name)


def test_auto_falls_back_to_the_chunked_scan_without_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    mixer = make_mixer(chunk_size=4)
    x = torch.randn(2, 11, D_MODEL)
    expected, _ = make_mixer(scan="sequential")(x)
    monkeypatch.setattr(mamba_mixer, "cpu_kernel_available", lambda: False)
    kernel_calls, chunked_calls = spy(monkeypatch, "selective_scan_cpu"), spy(monkeypatch, "selective_scan_chunked")
    actual, _ = mixer(x)
    assert kernel_calls == [] and chunked_calls == [1]
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


@needs_cc
def test_streamed_single_frames_take_one_step(monkeypatch: pytest.MonkeyPatch) -> None:
    mixer = make_mixer(scan="cpu_kernel")
    x = torch.randn(2, 6, D_MODEL)
    kernel_calls, steps = spy(monkeypatch, "selective_scan_cpu"), spy(monkeypatch, "selective_scan_step")
    state = (torch.zeros(2, 48, 3), torch.zeros(2, 48, 16))
    _, state = mixer(x[:, :5], None, state)  # a chunk of 5 frames: the kernel
    mixer(x[:, 5:], None, state)  # one frame: one step
    assert kernel_calls == [1] and steps == [1]


def test_explicit_cpu_kernel_fails_loudly_when_it_cannot_be_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel, "cpu_kernel_available", lambda: False)
    monkeypatch.setattr(kernel, "_build_error", "no C compiler: 'cc' is not on PATH")
    mixer = make_mixer(scan="cpu_kernel")
    with pytest.raises(RuntimeError, match="could not be built: no C compiler"):
        mixer(torch.randn(1, 5, D_MODEL))


def test_unknown_scan_is_rejected() -> None:
    with pytest.raises(ValueError, match="scan must be one of auto, cpu_kernel, chunked, sequential, got 'fast'"):
        MambaMixer(D_MODEL, scan="fast")


def fake_selective_scan_fn(u, delta, A, B, C, D=None, z=None):
    """mamba-ssm's selective_scan_fn semantics: (scan + D u) * SiLU(z)."""
    y, _ = selective_scan_sequential(u, delta, A, B, C)
    return (y + u * D[:, None]) * F.silu(z)


def test_kernel_path_glue_matches_pytorch_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    mixer = make_mixer(chunk_size=4)
    x = torch.randn(2, 11, D_MODEL)
    valid = torch.arange(11) < torch.tensor([11, 7])[:, None]
    expected, _ = mixer(x, valid)
    calls = []
    monkeypatch.setattr(mamba_mixer, "selective_scan_fn", lambda *a: calls.append(1) or fake_selective_scan_fn(*a))
    monkeypatch.setattr(MambaMixer, "uses_kernel", lambda self, x, streaming: not streaming)
    actual, _ = mixer(x, valid)
    assert calls == [1]
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_kernel_is_used_only_on_cuda_for_whole_utterances(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mamba_mixer, "selective_scan_fn", fake_selective_scan_fn)
    mixer = make_mixer()
    assert not mixer.uses_kernel(torch.zeros(1), streaming=False)  # CPU
    monkeypatch.setattr(mamba_mixer, "selective_scan_fn", None)
    assert not mixer.uses_kernel(torch.zeros(1), streaming=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    mixer = make_mixer()
    x = torch.randn(2, 40, D_MODEL)
    valid = torch.arange(40) < torch.tensor([40, 25])[:, None]
    expected, _ = mixer(x, valid)
    actual, _ = mixer.cuda()(x.cuda(), valid.cuda())
    torch.testing.assert_close(actual.cpu(), expected, atol=1e-4, rtol=0)
