"""Shared fixtures: deterministic seeds and a tiny model config."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import parametrize

from speechforge.modules.inference_transform import optimize_for_cpu_inference


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_config() -> dict[str, Any]:
    """A 2-block, 32-dim Conformer-CTC model description."""
    return {
        "vocab_size": 20,
        "frontend": {"type": "fbank", "num_mel_bins": 40},
        "encoder": {
            "type": "conformer",
            "d_model": 32,
            "heads": 4,
            "num_blocks": 2,
            "ffn": {"type": "dense", "hidden": 64},
            "encoder_block": {"type": "conformer", "conv_kernel": 5},
        },
        "losses": [{"type": "ctc", "weight": 1.0}],
    }


WORDS = ["ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO", "FOXTROT", "GOLF", "HOTEL"]


def write_tiny_data_dir(root, num_utts: int = 8, seed: int = 0, sample_rate: int = 16000):
    """A data dir of short noisy tone clips with word transcripts (no eSpeak needed)."""
    import random as _random

    import numpy as np
    import soundfile

    from speechforge.data.data_dir import Utterance, write_data_dir

    rng = _random.Random(seed)
    audio_dir = root / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    utterances = []
    for i in range(num_utts):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 3))]
        seconds = 0.6 + 0.25 * len(words) + rng.random() * 0.3
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * len(words[0])) * t) + 0.01 * np.random.default_rng(i).standard_normal(t.size)
        path = audio_dir / f"utt{i:03d}.flac"
        soundfile.write(path, wave.astype(np.float32), sample_rate)
        utterances.append(Utterance(f"spk{i % 2}-utt{i:03d}", str(path), " ".join(words), f"spk{i % 2}", t.size / sample_rate))
    write_data_dir(root / "data", utterances)
    return root / "data"


@pytest.fixture
def tiny_data_dir(tmp_path):
    return write_tiny_data_dir(tmp_path)


@pytest.fixture
def untrained_experiment(tmp_path, tiny_data_dir):
    """``make(model_config, decode_section) -> exp_dir``: tokenizer, config and random weights
    over ``tiny_data_dir``, all the decoding commands need."""
    from speechforge.builder import build_model
    from speechforge.config import save_config
    from speechforge.data.data_dir import read_data_dir
    from speechforge.text.char_tokenizer import CharTokenizer
    from speechforge.train.checkpoint import save_checkpoint

    def make(model: dict[str, Any], decode: dict[str, Any]):
        exp = tmp_path / "exp"
        tokenizer = CharTokenizer.train([u.text for u in read_data_dir(tiny_data_dir)])
        tokenizer.save(exp / "tokenizer")
        config = {**model, "vocab_size": tokenizer.vocab_size, "decode": decode}
        save_config(config, exp / "config.yaml")
        save_checkpoint({"model": build_model(config).state_dict()}, exp / "model_avg.pt")
        return exp

    return make


class _ShiftedWeight(nn.Module):
    """A stand-in for a layer (not a subclass): the same parameters, another ``forward`` that
    adds ``delta`` to one of them, as a quantizer or LoRA swap does."""

    def __init__(self, layer: nn.Module, name: str, delta: torch.Tensor) -> None:
        super().__init__()
        self.layer, self.name = layer, name
        self.register_buffer("delta", delta)

    def forward(self, *args: Any) -> Any:
        params = dict(self.layer.named_parameters())
        params[self.name] = params[self.name] + self.delta
        return functional_call(self.layer, params, args)


class _AddDelta(nn.Module):
    def __init__(self, delta: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("delta", delta)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta


@pytest.fixture
def assert_layer_changes_take_effect() -> Callable[..., None]:
    """``check(model, path, run, weight="weight")``: a module swap of ``model``'s layer at
    ``path`` and a ``torch.nn.utils.parametrize`` parametrization of its ``weight`` each give
    ``run``'s output of the model whose weight was changed by the same amount, in training
    (``train()``, gradients), in inference (``eval()`` + ``no_grad``) and in inference after
    ``optimize_for_cpu_inference``, which must leave the changed layer as it is."""

    def run_in(model: nn.Module, run: Callable[[nn.Module], torch.Tensor], training: bool) -> torch.Tensor:
        if training:
            return run(model.train())
        with torch.no_grad():
            return run(model.eval())

    def check(model: nn.Module, path: str, run: Callable[[nn.Module], torch.Tensor], weight: str = "weight") -> None:
        parameter = getattr(model.get_submodule(path), weight)
        delta = 0.5 * parameter.detach().std() * torch.randn_like(parameter)
        changed = copy.deepcopy(model)
        with torch.no_grad():
            getattr(changed.get_submodule(path), weight).add_(delta)
        swapped, parametrized = copy.deepcopy(model), copy.deepcopy(model)
        parent, _, name = path.rpartition(".")
        owner = swapped.get_submodule(parent) if parent else swapped
        setattr(owner, name, _ShiftedWeight(getattr(owner, name), weight, delta))
        parametrize.register_parametrization(parametrized.get_submodule(path), weight, _AddDelta(delta))
        for mode in ("train", "eval", "transformed"):
            training = mode == "train"
            expected = run_in(changed, run, training)
            assert not torch.allclose(expected, run_in(model, run, training), atol=1e-3), "the change must show"
            for variant in (swapped, parametrized):
                if mode == "transformed":
                    variant = optimize_for_cpu_inference(variant)
                    layer = variant.get_submodule(path)
                    assert isinstance(layer, _ShiftedWeight) or parametrize.is_parametrized(layer), type(layer)
                got = run_in(variant, run, training)
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5, msg=lambda m: f"{path}, {mode}: {m}")

    return check
