"""The ``rnnt`` and ``pruned_rnnt`` losses on a model: the full loss is torchaudio's on the
joiner's logits, the pruned loss reports its parts and weights them with icefall's warm-up over
the run's progress, missing parts are named, and a tiny model learns."""
from __future__ import annotations

import pytest
import torch
from torchaudio.functional import rnnt_loss

from speechforge.builder import build_model
from speechforge.errors import ConfigError
from speechforge.interfaces import LossInputs, Progress
from speechforge_plugins.rnnt.k2_backend import k2_available
from speechforge_plugins.rnnt.loss_warmup import transducer_loss_weights

from .transducer_models import PREDICTORS, V, transducer_config

TARGETS = torch.tensor([[1, 2, 3, 4], [5, 6, -1, -1], [7, -1, -1, -1]])
TARGET_LENS = torch.tensor([4, 2, 1])
ENC_LENS = torch.tensor([9, 7, 5])


def inputs_for(model, progress=None) -> LossInputs:
    encoder_out = torch.randn(3, 9, 16, requires_grad=True)
    return LossInputs(model, encoder_out, ENC_LENS, TARGETS, TARGET_LENS, progress)


def model_with(losses, **decoder):
    return build_model(transducer_config(PREDICTORS["lstm"], losses=losses, **decoder))


@pytest.mark.parametrize("backend", ["native", "torchaudio"])
def test_rnnt_loss_is_torchaudio_on_the_joiner_logits(backend):
    model = model_with([{"type": "rnnt", "backend": backend}])
    inputs = inputs_for(model)
    loss = model.losses["rnnt"](inputs)
    decoder = model.decoder
    blank_prefixed = torch.cat((torch.zeros(3, 1, dtype=torch.long), TARGETS.clamp(min=0)), dim=1)
    pred = decoder.joiner.predictor_proj(decoder.predictor(blank_prefixed)[0])
    logits = decoder.joiner(decoder.joiner.encoder_proj(inputs.encoder_out).unsqueeze(2), pred.unsqueeze(1))
    expected = rnnt_loss(logits, TARGETS.clamp(min=0).int(), ENC_LENS.int(), TARGET_LENS.int(), blank=0, reduction="mean")
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-4)


def test_pruned_rnnt_parts_and_warmup_weights():
    model = model_with([{"type": "pruned_rnnt", "s_range": 5, "warmup": 0.5}], simple_projections=True)
    loss_module = model.losses["pruned_rnnt"]
    for fraction in (0.0, 0.25, 0.9):
        torch.manual_seed(1)
        out = loss_module(inputs_for(model, Progress(step=1, epoch=0, total_steps=10, fraction=fraction)))
        simple_weight, pruned_weight = transducer_loss_weights(min(fraction / 0.5, 1.0), 0.5)
        torch.testing.assert_close(out.loss, simple_weight * out.scalars["simple"] + pruned_weight * out.scalars["pruned"])
    # with ranges covering every symbol (s_range > U) the pruned part is the full loss
    full = model_with([{"type": "rnnt", "backend": "torchaudio"}])
    full.load_state_dict(model.state_dict(), strict=False)
    torch.manual_seed(1)
    expected = full.losses["rnnt"](inputs_for(full))
    torch.testing.assert_close(out.scalars["pruned"], expected, rtol=1e-4, atol=1e-4)
    # outside training (no progress) warm-up is over
    evaluated = loss_module(inputs_for(model))
    torch.testing.assert_close(evaluated.loss, 0.5 * evaluated.scalars["simple"] + evaluated.scalars["pruned"])


def test_model_reports_the_parts_and_backpropagates():
    model = model_with([{"type": "pruned_rnnt", "rnnt_type": "modified"}], simple_projections=True)
    batch = {"speech": torch.randn(3, 8000), "speech_lens": torch.tensor([8000, 7000, 6000]),
             "targets": TARGETS[:, :2].clone(), "target_lens": TARGET_LENS.clamp(max=2)}  # fmt: skip
    out = model(batch)
    assert {"pruned_rnnt_simple", "pruned_rnnt_pruned"} <= set(out)
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.ctc is None


@pytest.mark.parametrize("rnnt_type", ["modified", "constrained"])
def test_utterances_without_an_alignment_add_nothing(rnnt_type):
    """One token per frame: an utterance with 4 tokens and 3 frames has no alignment; the loss
    and its gradients are those of the other utterances alone."""
    model = model_with([{"type": "pruned_rnnt", "rnnt_type": rnnt_type}], simple_projections=True)
    loss = model.losses["pruned_rnnt"]
    encoder_out = torch.randn(2, 6, 16, requires_grad=True)
    targets = torch.tensor([[1, 2, 3, 4], [5, 6, -1, -1]])
    both = loss(LossInputs(model, encoder_out, torch.tensor([3, 6]), targets, torch.tensor([4, 2])))
    both.loss.backward()
    assert torch.isfinite(encoder_out.grad).all() and encoder_out.grad[0].abs().sum() == 0
    alone = loss(LossInputs(model, encoder_out[1:], torch.tensor([6]), targets[1:, :2], torch.tensor([2])))
    torch.testing.assert_close(both.loss, alone.loss / 2)


def test_missing_parts_are_named():
    with pytest.raises(ConfigError, match=r"losses\.0: pruned_rnnt needs the decoder's simple_projections: true"):
        model_with([{"type": "pruned_rnnt"}]).losses["pruned_rnnt"](inputs_for(model_with([{"type": "pruned_rnnt"}])))
    config = transducer_config(PREDICTORS["lstm"], losses=[{"type": "ctc"}, {"type": "rnnt"}])
    del config["decoder"]
    model = build_model(config)
    with pytest.raises(ConfigError, match=r"losses\.1 needs a decoder of kind TransducerDecoder; the model has none"):
        model.losses["rnnt"](inputs_for(model))
    with pytest.raises(ConfigError, match=r"losses\.0\.rnnt_type: must be one of regular, modified, constrained, got 'x'"):
        model_with([{"type": "pruned_rnnt", "rnnt_type": "x"}])
    if not k2_available():
        with pytest.raises(ConfigError, match=r"losses\.0\.backend: k2 is not importable here"):
            model_with([{"type": "pruned_rnnt", "backend": "k2"}], simple_projections=True)
    too_many = model_with([{"type": "pruned_rnnt"}], simple_projections=True)
    inputs = inputs_for(too_many)
    inputs.encoder_out = inputs.encoder_out[:, :3]
    with pytest.raises(ConfigError, match=r"at most one token per encoder frame .* 4 tokens for 3 frames"):
        too_many.losses["pruned_rnnt"](inputs)


@pytest.mark.parametrize("predictor", ["lstm", "stateless"])
def test_a_tiny_model_learns(predictor):
    model = build_model(transducer_config(PREDICTORS[predictor], losses=[{"type": "pruned_rnnt"}], simple_projections=True))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = {"speech": torch.randn(2, 8000), "speech_lens": torch.tensor([8000, 6400]),
             "targets": torch.tensor([[1, 2, 3], [4, 5, -1]]), "target_lens": torch.tensor([3, 2])}  # fmt: skip
    losses = []
    for step in range(8):
        out = model(batch, Progress(step=step, epoch=0, total_steps=8, fraction=step / 8))
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["pruned_rnnt_pruned"]))
    assert losses[-1] < 0.7 * losses[0], losses
