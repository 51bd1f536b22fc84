"""Builds tiny models with ``gated`` and its gates through speechforge's registry (the installed
package's entry point) and checks it against the ffn contract."""
from __future__ import annotations

import torch

from speechforge.builder import build_model
from speechforge.plugins import create_host

CONFIG = {
    "vocab_size": 12,
    "frontend": {"type": "fbank", "num_mel_bins": 20},
    "encoder": {
        "type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 1,
        "ffn": {"type": "dense", "hidden": 32}, "encoder_block": {"type": "conformer", "conv_kernel": 3},
    },
    "losses": [{"type": "ctc", "weight": 1.0}],
}
BATCH = {
    "speech": torch.randn(2, 4000),
    "speech_lens": torch.tensor([4000, 3000]),
    "targets": torch.tensor([[1, 2, 3], [4, 5, -1]]),
    "target_lens": torch.tensor([3, 2]),
}


def test_the_plugin_loads_and_registers_gated():
    host = create_host()
    assert not [f.describe() for f in host.failed if f.name == "speechforge_plugin_example"]
    assert host.plugin("speechforge_plugin_example").components == {"gate": ["sigmoid", "swish", "gelu"], "ffn": ["gated"]}


CONFIG["encoder"]["ffn"] = {"type": "gated", "hidden": 24, "gate": {"type": "gelu"}}


def test_a_model_with_gated_trains_one_step():
    torch.manual_seed(0)
    model = build_model(CONFIG, create_host())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    first = model(BATCH)["loss"]
    assert torch.isfinite(first)
    first.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    optimizer.step()
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(BATCH)["loss"])


def test_gated_keeps_the_shape_and_is_position_wise():
    model = build_model(CONFIG, create_host()).eval()
    ffn = model.encoder.blocks[0].feed_forward
    x = torch.randn(2, 7, 16)
    out = ffn(x)
    assert out.shape == x.shape
    torch.testing.assert_close(ffn(x[:, 3:4]), out[:, 3:4])  # each frame on its own


def test_every_gate_is_reached_through_the_ffn_config():
    host = create_host()
    assert host.plugin("speechforge_plugin_example").components["gate"] == ["sigmoid", "swish", "gelu"]
    x = torch.randn(2, 5, 16)
    for gate, reference in [
        ({"type": "sigmoid"}, torch.sigmoid),
        ({"type": "swish", "beta": 2.0}, lambda h: h * torch.sigmoid(2.0 * h)),
        ({"type": "gelu", "approximate": "tanh"}, lambda h: torch.nn.functional.gelu(h, approximate="tanh")),
    ]:
        ffn = host.registry.build("ffn", {"type": "gated", "hidden": 8, "gate": gate, "dropout": 0.0}, "ffn", d_model=16)
        naive = ffn.w_out(ffn.w_value(x) * reference(ffn.w_gate(x)))
        torch.testing.assert_close(ffn(x), naive)


def test_gated_with_swish_is_core_gated_dense():
    host = create_host()
    ours = host.registry.build("ffn", {"type": "gated", "hidden": 8, "dropout": 0.0}, "ffn", d_model=16)
    core = host.registry.build(
        "ffn", {"type": "dense", "hidden": 8, "gated": True, "activation": "swish", "dropout": 0.0}, "ffn", d_model=16
    )
    core.w_1.load_state_dict(ours.w_gate.state_dict())
    core.w_gate.load_state_dict(ours.w_value.state_dict())
    core.w_2.load_state_dict(ours.w_out.state_dict())
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(ours(x), core(x))


def test_a_misspelt_gate_key_names_its_path():
    import pytest

    from speechforge.errors import ConfigError

    config = {**CONFIG, "encoder": {**CONFIG["encoder"], "ffn": {"type": "gated", "gate": {"type": "swish", "beta2": 1.0}}}}
    with pytest.raises(ConfigError, match=r"encoder\.ffn\.gate\.beta2: unknown key for gate 'swish'; did you mean beta\?"):
        build_model(config, create_host())
