"""Double quantization of metadata: int8 codes with one float32 step per tensor."""
from __future__ import annotations

import pytest
import torch

from speechforge.errors import ConfigError
from speechforge_plugins.quant.metadata_codec import check_metadata_dtype, fake_quantize_metadata, int8_decode, int8_encode


def test_int8_codes_follow_absmax_formula():
    values = torch.randn(7, 3) * 0.1
    codes, step = int8_encode(values)
    assert codes.dtype == torch.int8 and step.dtype == torch.float32 and step.dim() == 0
    expected_step = values.abs().max() / 127
    torch.testing.assert_close(step, expected_step)
    assert torch.equal(codes, torch.round(values / expected_step).to(torch.int8))
    assert int(codes.abs().max()) == 127
    assert (int8_decode(codes, step) - values).abs().max() <= step / 2 + 1e-9


def test_fake_quantized_metadata_equals_decoded_codes_with_identity_gradient():
    values = (torch.rand(5, 4) + 0.1).requires_grad_()
    stored = fake_quantize_metadata(values, "int8")
    assert torch.equal(stored, int8_decode(*int8_encode(values)))
    stored.backward(torch.arange(20.0).reshape(5, 4))
    assert torch.equal(values.grad, torch.arange(20.0).reshape(5, 4))
    assert fake_quantize_metadata(values, "float32") is values


def test_all_zero_metadata_encodes_to_zero():
    codes, step = int8_encode(torch.zeros(4))
    assert torch.equal(int8_decode(codes, step), torch.zeros(4))


def test_unknown_metadata_dtype_names_the_layer():
    with pytest.raises(ConfigError, match=r"enc\.proj: scale_dtype must be one of \('float32', 'int8'\), got 'fp16'"):
        check_metadata_dtype("fp16", "enc.proj")
