"""MoE-FFN Conformer encoder against its dense counterpart and WeNet-style dispatch, same process.

Usage::

    .venv/bin/python bench/moe.py            # full run, about 5 minutes on 2 cores
    .venv/bin/python bench/moe.py --quick    # 2 s utterances, fewer repeats: a smoke run
    .venv/bin/python bench/moe.py --threads 1

The encoders are the ``encoder`` section of ``egs/librispeech/conf/u2pp_conformer.yaml``
(Conformer, 12 blocks, 256 dims, 4 heads, FFN 2048, kernel 15, causal convolution; full context
in inference), built through the registry: as written (dense) and with ``ffn: {type: moe,
num_experts: 8, top_k: 1|2, hidden: 2048}`` in both macaron FFNs of every block (each expert
the size of the dense FFN). The top-1, top-2 and WeNet-loop encoders share one set of MoE
weights. The WeNet loop is ``wenet/transformer/positionwise_feed_forward.py``'s
``MoEFFNLayer.forward``: for each expert, ``torch.where`` finds its frames, the expert runs on
them, and the weighted result is added back into the output; its experts are ours (same
kernels), so the comparison is of dispatch alone. Its output must agree with ours within 1e-4
before anything is timed.

A randomly initialised encoder routes nearly every frame of an utterance to one or two experts
(its hidden states share a large common component), which would flatter the MoE at batch 1 (few
experts' weights read) and is nothing like a trained model. :func:`balance_routers` therefore
sets each router, on a calibration utterance, to random directions of its whitened input with
the common component removed: the busiest expert then gets 1.1-1.9x its fair share of frames,
like a trained MoE; the JSON reports the load it measured (``*_max_load_vs_fair``).

Timings are fp32 eager inference (``torch.inference_mode``, eval), ``torch.set_num_threads(2)``
(``--threads``),
on 10 s utterances (1000 frames of 80-dim fbank), batch 1 and 8; the encoders run alternately
(A B C ... A B C ...) after warm-up and each figure is the median. Prints one JSON object:
``param_ratio`` = MoE / dense encoder parameters, ``rtf_ratio_top1_b*`` = MoE top-1 / dense
time, ``dispatch_speedup_b*`` = WeNet loop / our time at top-2 (above 1: we are faster), and
``layer_padded_vs_grouped_top*_b*`` = time of the first MoE layer alone with ``dispatch:
padded`` over ``dispatch: grouped`` on its real input (above 1: grouped, ``auto``'s CPU choice,
is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechforge.builder import build_model
from speechforge.config import load_config
from speechforge.interfaces import FeedForward
from speechforge.modules.inference_transform import optimize_for_cpu_inference
from speechforge.plugins import default_host
from speechforge_plugins.moe.moe_feed_forward import MoEFeedForward

INPUT_DIM = 80
FRAMES = 1000  # 10 s at a 10 ms frame shift
THREADS = 2
NUM_EXPERTS = 8
TOLERANCE = 1e-4

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "librispeech" / "conf" / "u2pp_conformer.yaml"
ENCODER = load_config(RECIPE)["encoder"]


def moe_ffn(top_k: int) -> dict[str, Any]:
    """The recipe's dense FFN as 8 experts of the same size."""
    return {**ENCODER["ffn"], "type": "moe", "num_experts": NUM_EXPERTS, "top_k": top_k}


class WeNetLoopFFN(FeedForward):
    """WeNet's ``MoEFFNLayer.forward`` on the weights of one of our layers (shared, not copied)."""

    def __init__(self, layer: MoEFeedForward) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, T, D). Returns (B, T, D)."""
        m = self.layer
        xs = x.reshape(-1, x.size(-1))  # (N, D)
        router = m.gate(xs)  # (N, E)
        logits, selected_experts = torch.topk(router, m.top_k)
        weights = F.softmax(logits, dim=1, dtype=torch.float).to(dtype=xs.dtype)
        output = torch.zeros_like(xs)
        for i in range(m.num_experts):
            token_ids, ith_expert = torch.where(selected_experts == i)
            output[token_ids] += weights[token_ids, ith_expert, None] * m.expert(xs[token_ids], i)
        return output.view_as(x)


def build(ffn: dict[str, Any]) -> nn.Module:
    config = {**ENCODER, "ffn": ffn}
    return default_host().registry.build("encoder", config, "encoder", input_dim=INPUT_DIM).eval()


def share_weights(encoder: nn.Module, source: nn.Module) -> nn.Module:
    """Make ``encoder`` use ``source``'s tensors (no copy): same model, other dispatch."""
    encoder.load_state_dict(source.state_dict(), assign=True)
    return encoder.eval()


def with_wenet_loop(encoder: nn.Module) -> nn.Module:
    """Wrap every MoE layer of ``encoder`` in :class:`WeNetLoopFFN`."""
    for block in encoder.blocks:
        block.feed_forward = WeNetLoopFFN(block.feed_forward)
        block.feed_forward_macaron = WeNetLoopFFN(block.feed_forward_macaron)
    return encoder


def balance_routers(encoder: nn.Module, feats: Tensor, lengths: Tensor, rank: int = 64) -> None:
    """Set every router of ``encoder`` from its input on ``feats``, first layer first, so that
    frames spread over the experts (see the module docstring)."""

    def calibrate(layer: MoEFeedForward, args: tuple[Tensor]) -> None:
        x = args[0].reshape(-1, args[0].size(-1))  # (N, D)
        mean = x.mean(0)
        _, singular, directions = torch.linalg.svd(x - mean, full_matrices=False)
        gate = (torch.randn(layer.num_experts, rank) / singular[:rank]) @ directions[:rank]  # (E, D)
        unit = mean / mean.norm()
        gate -= (gate @ unit).unsqueeze(1) * unit  # no common component in the logits
        layer.gate.weight.copy_(gate / (x @ gate.t()).std())

    layers = [m for m in encoder.modules() if isinstance(m, MoEFeedForward)]
    hooks = [layer.register_forward_pre_hook(calibrate) for layer in layers]
    with torch.no_grad():
        encoder(feats, lengths)
    for hook in hooks:
        hook.remove()


def max_load_vs_fair(encoder: nn.Module) -> float:
    """Busiest expert's frames over the fair share, averaged over the layers, last forward."""
    ratios = [
        m.router_state.counts.max().item() * m.num_experts / m.router_state.counts.sum().item()
        for m in encoder.modules()
        if isinstance(m, MoEFeedForward)
    ]
    return statistics.mean(ratios)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def whole_model_parameters() -> tuple[int, int]:
    """Parameters of the whole U2++ recipe model (encoder, bidirectional decoder, CTC; 5000
    BPE tokens as in the recipe), dense and with every encoder and decoder FFN a MoE: the
    paper's 4.7x counts the whole model, whose embeddings and output layers stay dense."""
    config = load_config(RECIPE)
    config["vocab_size"] = config["tokenizer"]["vocab_size"]
    dense = count_parameters(build_model(config))
    for part in ("encoder", "decoder"):
        config[part]["ffn"] = {**config[part]["ffn"], "type": "moe", "num_experts": NUM_EXPERTS, "top_k": 2}
    return dense, count_parameters(build_model(config))


def layer_inputs(encoder: nn.Module, feats: Tensor, lengths: Tensor) -> Tensor:
    """What the first MoE layer of ``encoder`` sees on ``feats``: (B, T', D)."""
    captured: list[Tensor] = []
    layer = encoder.blocks[0].feed_forward_macaron
    hook = layer.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    encoder(feats, lengths)
    hook.remove()
    return captured[0]


def dispatch_layers(source: MoEFeedForward) -> dict[str, MoEFeedForward]:
    """The layer ``source`` as ``grouped`` and ``padded`` MoE layers (shared weights), top-1 and top-2."""
    layers = {}
    for k in (1, 2):
        for dispatch in ("grouped", "padded"):
            config = {**moe_ffn(k), "dispatch": dispatch}
            layer = default_host().registry.build("ffn", config, "ffn", d_model=ENCODER["d_model"])
            layer.load_state_dict(source.state_dict(), assign=True)
            layers[f"{dispatch}_top{k}"] = layer.eval()
    return layers


def time_alternating(runs: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call, the calls interleaved so load changes hit every entry alike."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order too
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s utterances, fewer repeats: a smoke run")
    parser.add_argument("--threads", type=int, default=THREADS, help="intra-op threads (default %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    dense = build(ENCODER["ffn"])
    top2 = build(moe_ffn(2))
    balance_routers(top2, torch.randn(1, FRAMES, INPUT_DIM), torch.tensor([FRAMES]))
    encoders = {
        "dense": dense,
        "moe_top1": share_weights(build(moe_ffn(1)), top2),
        "moe_top2": top2,
        "wenet_loop_top1": with_wenet_loop(share_weights(build(moe_ffn(1)), top2)),
        "wenet_loop_top2": with_wenet_loop(share_weights(build(moe_ffn(2)), top2)),
    }
    layers = dispatch_layers(top2.blocks[0].feed_forward_macaron)
    for model in (*encoders.values(), *layers.values()):  # weights stay shared: packed in place
        optimize_for_cpu_inference(model, inplace=True)
    dense_params, moe_params = count_parameters(dense), count_parameters(top2)
    expert_params = count_parameters(top2.blocks[0].feed_forward) - top2.blocks[0].feed_forward.gate.weight.numel()
    result: dict[str, Any] = {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": args.threads,
        "load_avg_1min_before": os.getloadavg()[0],
        "encoder": f"{RECIPE.relative_to(RECIPE.parents[3])}: encoder; moe: 8 experts of its FFN in both macaron FFNs",
        "dense_params": dense_params,
        "moe_params": moe_params,
        "dense_ffn_layer_params": count_parameters(dense.blocks[0].feed_forward),
        "moe_ffn_layer_expert_params": expert_params,
        "param_ratio": moe_params / dense_params,
    }
    whole_dense, whole_moe = whole_model_parameters()
    result.update(
        u2pp_model_dense_params=whole_dense,
        u2pp_model_moe_params=whole_moe,
        u2pp_model_param_ratio=whole_moe / whole_dense,
    )
    frames, warmup, repeats = (200, 1, 3) if args.quick else (FRAMES, 2, 15)
    result.update(frames=frames, seconds_per_utterance=frames / 100)
    with torch.inference_mode():
        for batch in (1, 8):
            feats = torch.randn(batch, frames, INPUT_DIM)
            lengths = torch.full((batch,), frames)
            for k in (1, 2):
                ours = encoders[f"moe_top{k}"](feats, lengths)[0]
                result[f"moe_top{k}_b{batch}_max_load_vs_fair"] = max_load_vs_fair(encoders[f"moe_top{k}"])
                loop = encoders[f"wenet_loop_top{k}"](feats, lengths)[0]
                error = (ours - loop).abs().max().item()
                if error > TOLERANCE:
                    raise SystemExit(f"top-{k} batch {batch}: our MoE and the WeNet loop differ by {error:.2e}")
            seconds = time_alternating(
                {name: (lambda e=e: e(feats, lengths)) for name, e in encoders.items()},
                warmup,
                repeats if batch == 1 else max(2, repeats // 3),
            )
            for name, value in seconds.items():
                result[f"{name}_b{batch}_s"] = value
                result[f"{name}_b{batch}_rtf"] = value / (batch * frames / 100)
            result[f"rtf_ratio_top1_b{batch}"] = seconds["moe_top1"] / seconds["dense"]
            result[f"rtf_ratio_top2_b{batch}"] = seconds["moe_top2"] / seconds["dense"]
            result[f"dispatch_speedup_b{batch}"] = seconds["wenet_loop_top2"] / seconds["moe_top2"]
            result[f"dispatch_speedup_top1_b{batch}"] = seconds["wenet_loop_top1"] / seconds["moe_top1"]
            x = layer_inputs(top2, feats, lengths)
            layer_seconds = time_alternating(
                {name: (lambda m=m: m(x)) for name, m in layers.items()}, warmup, 5 * repeats
            )
            for k in (1, 2):
                ratio = layer_seconds[f"padded_top{k}"] / layer_seconds[f"grouped_top{k}"]
                result[f"layer_padded_vs_grouped_top{k}_b{batch}"] = ratio
    result["load_avg_1min_after"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
