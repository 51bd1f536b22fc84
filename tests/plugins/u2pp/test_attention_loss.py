"""The label-smoothing loss against a materialised KL divergence (WeNet's form), and the
``attention`` loss: left-to-right / right-to-left mixing, its combination with CTC in the
model, and its config errors."""
from __future__ import annotations

import pytest
import torch

from speechforge.builder import build_model
from speechforge.errors import ConfigError
from speechforge.interfaces import LossInputs
from speechforge.modules.mask import padding_mask
from speechforge_plugins.u2pp.label_smoothing_loss import LabelSmoothingLoss
from speechforge_plugins.u2pp.targets import IGNORE_ID, add_sos_eos, reverse_pad_list

V = 11


def naive_label_smoothing(logits, target, smoothing, normalize_length=False):
    """WeNet's LabelSmoothingLoss: materialise the smoothed target, KLDivLoss, mask, divide."""
    batch = logits.size(0)
    x = logits.reshape(-1, logits.size(-1))
    t = target.reshape(-1)
    true_dist = torch.full_like(x, smoothing / (x.size(1) - 1))
    ignore = t == IGNORE_ID
    total = len(t) - int(ignore.sum())
    true_dist.scatter_(1, t.masked_fill(ignore, 0).unsqueeze(1), 1 - smoothing)
    kl = torch.nn.KLDivLoss(reduction="none")(torch.log_softmax(x, dim=1), true_dist)
    return kl.masked_fill(ignore.unsqueeze(1), 0).sum() / (total if normalize_length else batch)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("normalize_length", [False, True])
def test_label_smoothing_equals_materialised_kl(smoothing, normalize_length):
    logits = torch.randn(3, 5, V, dtype=torch.float64)
    target = torch.randint(0, V, (3, 5))
    target[1, 3:] = IGNORE_ID
    target[2, 1:] = IGNORE_ID
    loss = LabelSmoothingLoss(V, smoothing, normalize_length=normalize_length)(logits, target)
    expected = naive_label_smoothing(logits.float(), target, smoothing, normalize_length)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)


def test_label_smoothing_checks_its_arguments():
    with pytest.raises(ValueError, match=r"label smoothing must be in \[0, 1\), got 1.0"):
        LabelSmoothingLoss(V, 1.0)
    with pytest.raises(ValueError, match="logits have 7 classes, the loss was built for 11"):
        LabelSmoothingLoss(V, 0.1)(torch.randn(1, 2, 7), torch.zeros(1, 2, dtype=torch.long))


def model_config(decoder_type: str = "bitransformer", reverse_weight: float = 0.3) -> dict:
    decoder = {"type": decoder_type, "heads": 2, "num_blocks": 1, "ffn": {"type": "dense", "hidden": 24}}
    if decoder_type == "bitransformer":
        decoder["r_num_blocks"] = 1
    return {
        "vocab_size": V,
        "frontend": {"type": "fbank", "num_mel_bins": 20},
        "encoder": {"type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 1, "ffn": {"type": "dense", "hidden": 24}},
        "decoder": decoder,
        "losses": [{"type": "ctc", "weight": 0.3}, {"type": "attention", "weight": 0.7, "reverse_weight": reverse_weight, "lsm_weight": 0.1}],
    }


def batch() -> dict[str, torch.Tensor]:
    return {
        "speech": torch.randn(2, 8000),
        "speech_lens": torch.tensor([8000, 6000]),
        "targets": torch.tensor([[1, 2, 3], [4, 5, IGNORE_ID]]),
        "target_lens": torch.tensor([3, 2]),
    }


def test_attention_loss_mixes_both_directions_and_combines_with_ctc():
    model = build_model(model_config(reverse_weight=0.3)).eval()
    data = batch()
    out = model(data)
    torch.testing.assert_close(out["loss"], 0.3 * out["ctc"] + 0.7 * out["attention"])
    encoder_out, encoder_lens = model.encode(data["speech"], data["speech_lens"])
    sos = eos = V - 1
    ys, lens = data["targets"], data["target_lens"]
    ys_in, ys_out = add_sos_eos(ys, lens, sos, eos)
    r_in, r_out = add_sos_eos(reverse_pad_list(ys, lens), lens, sos, eos)
    mask = padding_mask(encoder_lens, encoder_out.size(1)).unsqueeze(1)
    l2r = model.decoder.left_decoder(encoder_out, mask, ys_in, lens + 1)[0]
    r2l = model.decoder.right_decoder(encoder_out, mask, r_in, lens + 1)[0]
    expected = 0.7 * naive_label_smoothing(l2r, ys_out, 0.1) + 0.3 * naive_label_smoothing(r2l, r_out, 0.1)
    torch.testing.assert_close(out["attention"], expected, atol=1e-5, rtol=1e-5)


def test_training_step_reaches_every_decoder_parameter():
    model = build_model(model_config()).train()
    model(batch())["loss"].backward()
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_reverse_weight_zero_uses_the_left_decoder_only():
    model = build_model(model_config(reverse_weight=0.0)).train()
    model(batch())["loss"].backward()
    assert all(p.grad is None for p in model.decoder.right_decoder.parameters())


def test_reverse_weight_needs_a_bidirectional_decoder():
    model = build_model(model_config("transformer", reverse_weight=0.3))
    with pytest.raises(ConfigError, match=r"losses.reverse_weight: 0.3 needs a right-to-left decoder"):
        model(batch())


def test_attention_loss_needs_a_decoder():
    config = model_config()
    del config["decoder"]
    model = build_model(config)
    with pytest.raises(ConfigError, match=r"losses.1 needs a decoder of kind AttentionDecoder; the model has none \(add one under decoder: or decoders:\)"):
        model.losses["attention"](LossInputs(model, torch.randn(1, 4, 16), torch.tensor([4]), torch.tensor([[1]]), torch.tensor([1])))


def test_reverse_weight_range_is_checked():
    config = model_config()
    config["losses"][1]["reverse_weight"] = 1.5
    with pytest.raises(ConfigError, match=r"reverse_weight: must be in \[0, 1\], got 1.5"):
        build_model(config)


def naive_accuracy(logits, ys_out):
    """Token by token: how many targets (and <eos>) are their row's argmax, over how many."""
    correct = total = 0
    for n in range(ys_out.size(0)):
        for u in range(ys_out.size(1)):
            if ys_out[n, u] != IGNORE_ID:
                total += 1
                correct += int(logits[n, u].argmax() == ys_out[n, u])
    return correct / total


@pytest.mark.parametrize("reverse_weight", [0.0, 0.3])
def test_token_accuracy_is_reported_as_extra_scalars(reverse_weight):
    model = build_model(model_config(reverse_weight=reverse_weight)).eval()
    with torch.no_grad():  # <eos> often the argmax: some tokens right, some wrong
        for decoder in (model.decoder.left_decoder, model.decoder.right_decoder):
            decoder.output_layer.bias[V - 1] += 3.0
    data = batch()
    out = model(data)
    torch.testing.assert_close(out["loss"], 0.3 * out["ctc"] + 0.7 * out["attention"])  # scalars stay out
    assert 0.0 < out["attention_acc"].item() < 1.0
    encoder_out, encoder_lens = model.encode(data["speech"], data["speech_lens"])
    ys, lens = data["targets"], data["target_lens"]
    ys_in, ys_out = add_sos_eos(ys, lens, V - 1, V - 1)
    r_in, r_out = add_sos_eos(reverse_pad_list(ys, lens), lens, V - 1, V - 1)
    mask = padding_mask(encoder_lens, encoder_out.size(1)).unsqueeze(1)
    l2r = model.decoder.left_decoder(encoder_out, mask, ys_in, lens + 1)[0]
    assert not out["attention_acc"].requires_grad
    assert out["attention_acc"].item() == pytest.approx(naive_accuracy(l2r, ys_out))
    if reverse_weight == 0.0:
        assert "attention_acc_r2l" not in out
    else:
        r2l = model.decoder.right_decoder(encoder_out, mask, r_in, lens + 1)[0]
        assert out["attention_acc_r2l"].item() == pytest.approx(naive_accuracy(r2l, r_out))
