"""Builder: config -> model through registries only; Python composition; core's independence
from plugin code."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import speechforge
from speechforge.asr_model import ASRModel
from speechforge.config import load_config
from speechforge.errors import ConfigError
from speechforge.modules.conformer_encoder import ConformerEncoder

CORE = Path(speechforge.__file__).resolve().parent


def test_yaml_and_python_dict_build_the_same_model(tmp_path, tiny_config):
    import yaml

    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    from_yaml = speechforge.build(load_config(path))
    from_dict = speechforge.build(tiny_config)
    assert from_yaml.state_dict().keys() == from_dict.state_dict().keys()


def test_classes_compose_without_any_config_file(tiny_config):
    model = ASRModel(
        vocab_size=20,
        frontend={"type": "fbank", "num_mel_bins": 40},
        encoder={"type": "conformer", "d_model": 32, "heads": 4, "num_blocks": 2},
        losses=[{"type": "ctc"}],
    )
    assert isinstance(model.encoder, ConformerEncoder)
    encoder = ConformerEncoder(input_dim=40, d_model=32, heads=4, num_blocks=1)
    out, lens = encoder(torch.randn(2, 50, 40), torch.tensor([50, 30]))
    assert out.shape == (2, 11, 32) and lens.tolist() == [11, 6]


def test_forward_returns_weighted_loss_parts(tiny_config):
    tiny_config["losses"] = [{"type": "ctc", "weight": 0.5}]
    model = speechforge.build(tiny_config)
    batch = {
        "speech": torch.randn(2, 16000),
        "speech_lens": torch.tensor([16000, 9000]),
        "targets": torch.tensor([[1, 2, 3], [4, 5, -1]]),
        "target_lens": torch.tensor([3, 2]),
    }
    out = model(batch)
    assert torch.allclose(out["loss"], 0.5 * out["ctc"])
    out["loss"].backward()
    assert model.encoder.blocks[0].self_attn.linear_qkv.weight.grad is not None


def test_unknown_top_level_section(tiny_config):
    tiny_config["encodr"] = tiny_config.pop("encoder")
    with pytest.raises(ConfigError, match=r"^encodr: unknown key for task 'asr'; did you mean encoder\?"):
        speechforge.build(tiny_config)


def test_vocab_size_is_required(tiny_config):
    del tiny_config["vocab_size"]
    with pytest.raises(ConfigError, match="vocab_size: missing"):
        speechforge.build(tiny_config)


def test_empty_losses(tiny_config):
    tiny_config["losses"] = []
    with pytest.raises(ConfigError, match="losses: empty"):
        speechforge.build(tiny_config)


def test_rel_attention_needs_rel_positions(tiny_config):
    tiny_config["encoder"]["pos_enc"] = "abs"
    with pytest.raises(ConfigError, match="pos_enc: RelPositionMultiHeadAttention .* needs relative positions"):
        speechforge.build(tiny_config)


def test_core_never_imports_plugins():
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(CORE)}: {n}" for n in names if n.split(".")[0] == "speechforge_plugins"]
    assert not offenders
