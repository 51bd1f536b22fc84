"""The ``asr`` model holds the parts its config asks for: a CTC head only when a loss (or
``ctc_head``) asks, one or several named decoders that losses and searches find by kind,
today's checkpoints still loading, and a model without CTC training under DDP with
``find_unused_parameters=False``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import pytest
import torch
from torch import nn

from speechforge.builder import build_model
from speechforge.decode.ctc_greedy_search import CTCGreedySearch
from speechforge.decode.streaming_decoder import StreamingDecoder
from speechforge.errors import ConfigError
from speechforge.plugins import default_registry
from speechforge.train.checkpoint import load_model_weights
from speechforge_plugins.u2pp.attention_decoder import AttentionDecoder

V = 11
FIXTURE = Path(__file__).parent / "fixtures" / "asr_model_state_a0f4219.json"


def decoder_config(kind: str = "transformer") -> dict:
    config = {"type": kind, "heads": 2, "num_blocks": 1, "ffn": {"type": "dense", "hidden": 24}}
    return {**config, "r_num_blocks": 1} if kind == "bitransformer" else config


def config(losses: list[dict], **model: object) -> dict:
    return {
        "vocab_size": V,
        "frontend": {"type": "fbank", "num_mel_bins": 20},
        "encoder": {"type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 1, "ffn": {"type": "dense", "hidden": 24},
                    "causal": True},
        "losses": losses,
        **model,
    }


def attention_only(**model: object) -> dict:
    return config([{"type": "attention"}], decoder=decoder_config(), **model)


def batch() -> dict[str, torch.Tensor]:
    return {
        "speech": torch.randn(2, 8000),
        "speech_lens": torch.tensor([8000, 6000]),
        "targets": torch.tensor([[1, 2, 3], [4, 5, -1]]),
        "target_lens": torch.tensor([3, 2]),
    }


@pytest.mark.parametrize(
    "model_config,has_head",
    [
        (config([{"type": "ctc"}]), True),
        (attention_only(), False),
        (attention_only(ctc_head=True), True),
    ],
)
def test_the_ctc_head_exists_only_when_asked_for(model_config, has_head):
    model = build_model(model_config)
    assert (model.ctc is not None) == has_head
    assert any(key.startswith("ctc.") for key in model.state_dict()) == has_head


def test_ctc_head_key_is_checked():
    with pytest.raises(ConfigError, match=r"ctc_head: false, but losses ctc need a CTC head"):
        build_model(config([{"type": "ctc"}], ctc_head=False))
    with pytest.raises(ConfigError, match=r"ctc_head: expected true, false or no key, got 'yes'"):
        build_model(config([{"type": "ctc"}], ctc_head="yes"))


@pytest.mark.parametrize("method", ["ctc_greedy_search", "ctc_prefix_beam_search", "attention_rescoring"])
def test_ctc_searches_without_a_head_say_how_to_get_one(method):
    model = build_model(attention_only()).eval()
    search = default_registry().build("search", method, "decode")
    with pytest.raises(ConfigError, match=rf"^decode method {method} needs a CTC head: add \{{type: ctc\}} to losses"):
        search(model, torch.randn(1, 5, 16), torch.tensor([5]))


def test_streaming_without_a_head_says_how_to_get_one():
    config = attention_only()
    config["encoder"] = {**config["encoder"], "causal": True}
    stream = StreamingDecoder(build_model(config).eval(), CTCGreedySearch(), chunk_size=4)
    with pytest.raises(ConfigError, match=r"^decode method ctc_greedy_search needs a CTC head"):
        stream.accept_waveform(torch.randn(16000))


def test_an_attention_only_model_decodes_with_the_attention_search():
    model = build_model(attention_only()).eval()
    hyps = default_registry().build("search", "attention", "decode")(model, torch.randn(2, 5, 16), torch.tensor([5, 3]))
    assert len(hyps) == 2


def test_a_state_dict_of_the_one_decoder_model_from_a0f4219_loads_unchanged():
    recorded = json.loads(FIXTURE.read_text())
    old = {key: torch.randn(shape) if shape else torch.tensor(3) for key, shape in recorded["state_dict_shapes"].items()}
    model = build_model(recorded["config"])
    load_model_weights(model, old, FIXTURE)
    assert torch.equal(model.ctc.ctc_lo.weight, old["ctc.ctc_lo.weight"])
    assert torch.equal(model.decoder.output_layer.weight, old["decoder.output_layer.weight"])
    # the parts keep their order, so an optimizer state saved then still matches its parameters
    parts = [name.split(".")[0] for name, _ in model.named_parameters()]
    recorded_parts = [key.split(".")[0] for key in recorded["state_dict_shapes"] if key.split(".")[0] in set(parts)]
    assert list(dict.fromkeys(parts)) == list(dict.fromkeys(recorded_parts))


def test_named_decoders_keep_their_names_in_the_state_dict():
    model = build_model(config(
        [{"type": "ctc"}, {"type": "attention", "decoder": "l2r"}],
        decoders={"l2r": decoder_config(), "both": decoder_config("bitransformer")},
    ))
    assert model.decoder is None
    assert set(model.named_decoders()) == {"l2r", "both"}
    assert any(key.startswith("decoders.both.right_decoder.") for key in model.state_dict())
    assert not any(key.startswith("decoder.") for key in model.state_dict())
    model.train()(batch())["loss"].backward()
    assert all(p.grad is not None for p in model.decoders["l2r"].parameters())
    assert all(p.grad is None for p in model.decoders["both"].parameters())  # the loss chose l2r


@pytest.mark.parametrize(
    "model,error",
    [
        ({"decoder": decoder_config(), "decoders": {"a": decoder_config()}}, "decoders: give decoder: (one decoder) or decoders: (named ones), not both"),
        ({"decoders": {}}, "decoders: expected a mapping of names to decoder configs"),
        ({"decoders": {"a.b": decoder_config()}}, "decoders.a.b: a decoder name must be an identifier"),
        ({"decoders": {"a": {"type": "transformer", "heads": 2, "num_blocks": 1, "hidden": 3}}}, "decoders.a.hidden: unknown key"),
    ],
)
def test_decoder_keys_are_checked(model, error):
    with pytest.raises(ConfigError, match=f"^{error}".replace("(", r"\(").replace(")", r"\)")):
        build_model(config([{"type": "ctc"}], **model))


@runtime_checkable
class RightToLeft(Protocol):
    """A capability: a decoder that also reads right to left."""

    right_decoder: nn.Module


def test_find_decoder_by_base_class_capability_and_name():
    model = build_model(config([{"type": "ctc"}], decoders={"l2r": decoder_config(), "both": decoder_config("bitransformer")}))
    assert model.find_decoder(RightToLeft, user="test") is model.decoders["both"]
    assert model.find_decoder(AttentionDecoder, user="test", name="l2r") is model.decoders["l2r"]
    with pytest.raises(ConfigError, match=r"^test: decoders l2r, both are each of kind AttentionDecoder; say which with decoder: NAME"):
        model.find_decoder(AttentionDecoder, user="test")
    with pytest.raises(ConfigError, match=r"^test: decoder: 'x' is not a decoder of the model; it has l2r \(TransformerDecoder\), both"):
        model.find_decoder(AttentionDecoder, user="test", name="x")
    with pytest.raises(ConfigError, match=r"^test: decoder: 'l2r' is a TransformerDecoder, not of the kind RightToLeft that test needs"):
        model.find_decoder(RightToLeft, user="test", name="l2r")


def test_a_loss_and_a_search_name_their_config_when_several_decoders_fit():
    model = build_model(config(
        [{"type": "ctc"}, {"type": "attention"}], decoders={"a": decoder_config(), "b": decoder_config()}
    ))
    with pytest.raises(ConfigError, match=r"^losses.1: decoders a, b are each of kind AttentionDecoder"):
        model(batch())
    search = default_registry().build("search", {"type": "attention", "decoder": "c"}, "decode")
    with pytest.raises(ConfigError, match=r"^decode method attention: decoder: 'c' is not a decoder of the model"):
        search(model.eval(), torch.randn(1, 5, 16), torch.tensor([5]))


def test_a_model_without_ctc_trains_every_parameter():
    model = build_model(attention_only()).train()
    model(batch())["loss"].backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


def _ddp_rank(rank: int, init_file: str, result_dir: str) -> None:
    """One of two gloo ranks: three steps of the attention-only model under DDP."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # the same initial weights on both ranks
        model = DistributedDataParallel(build_model(attention_only()).train(), find_unused_parameters=False)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        torch.manual_seed(1 + rank)  # each rank its own data
        for _ in range(3):
            optimizer.zero_grad()
            model(batch())["loss"].backward()
            optimizer.step()
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        torch.save(flat, Path(result_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_a_model_without_ctc_trains_under_ddp_without_unused_parameters(tmp_path):
    torch.multiprocessing.start_processes(_ddp_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="fork")
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert torch.equal(rank0, rank1)
    torch.manual_seed(0)
    initial = torch.cat([p.detach().flatten() for p in build_model(attention_only()).parameters()])
    assert not torch.equal(rank0, initial)
