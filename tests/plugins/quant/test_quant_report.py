"""The size report (Table 2) of the paper-shaped usm_rnnt_binary.yaml, counted on the meta
device, its --json object, and the recipe's QAT configs building with their quantizers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.nn.utils import parametrize

from speechforge.builder import build_model
from speechforge.cli import main
from speechforge.config import load_config
from speechforge.empty_parameters import parameters_on_meta
from speechforge.errors import ConfigError
from speechforge_plugins.quant.quant_report import report_for

CONF = Path(__file__).resolve().parents[3] / "egs" / "librispeech" / "conf"


def test_usm_rnnt_binary_gives_the_issues_table_2_arithmetic():
    report = report_for(CONF / "usm_rnnt_binary.yaml")
    ratios = {key: round(value, 1) for key, value in report.ratios().items()}
    assert ratios == {"whole_f32_meta": 12.0, "whole_int8_meta": 13.9, "layers_f32_meta": 21.3, "layers_int8_meta": 28.4}
    assert report.experiment == "Exp5"
    assert report.quantized_weights == 16 * (4 * 1536 * 6144 + 4 * 1536 * 1536 + 1536 * 3072 + 1536 * 1536)
    # float: the 902.8M inference parameters (the pruned loss's simple projections left out)
    assert abs(report.whole_float_bits / 32 - 902.8e6) / 902.8e6 < 0.001
    table = report.markdown()
    whole = next(line for line in table.splitlines() if line.startswith("| whole model |"))
    assert whole.split(" | ")[3:] == ["12.0x", f"{report.whole_int8_meta_bits / 1e9:.3f}", "13.9x |"], whole
    assert "| paper, Exp5, whole USM RNN-T [Gbit] | 28.6 | 2.2 | 13x | 1.8 | 15.9x |" in table


def test_json_holds_the_four_reduction_factors(capsys):
    assert main(["quant-report", str(CONF / "usm_rnnt_small_2bit.yaml"), "vocab_size=32", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"whole_f32_meta", "whole_int8_meta", "layers_f32_meta", "layers_int8_meta"} <= report.keys()
    assert report["experiment"] == "Exp1" and report["packed_file"] is None
    # 2 bits + a scale and a zero point per output channel of 128 or 512 inputs: 2.375 bits per
    # weight with float32 metadata, about 2.1 with int8
    assert report["layers_f32_meta"] == pytest.approx(32 / 2.375)
    assert 15 < report["layers_int8_meta"] < 16


def test_a_float_config_has_no_size_report():
    with pytest.raises(ConfigError, match=r"usm_rnnt\.yaml: no quantizer: section"):
        report_for(CONF / "usm_rnnt.yaml")


@pytest.mark.parametrize(
    ("name", "bits"),
    [("usm_rnnt_small_binary", 1), ("usm_rnnt_small_2bit", 2), ("ctc_conformer_small64_binary", 1), ("ctc_conformer_small64_2bit", 2)],
)
def test_qat_configs_quantize_every_encoder_linear_from_their_float_baseline(name, bits):
    config = load_config(CONF / f"{name}.yaml")
    baseline = config["train"]["init_from"]["checkpoint"]
    assert (CONF / f"{Path(baseline).name}.yaml").is_file()  # exp/<float config name>
    with parameters_on_meta():
        model = build_model({**config, "vocab_size": 32})
    quantized = [m for m in model.encoder.modules() if parametrize.is_parametrized(m)]
    linears = [m for name, m in model.encoder.named_modules() if isinstance(m, torch.nn.Linear) and not name.startswith("embed.")]
    assert quantized == linears and all(m.parametrizations.weight[0].bits == bits for m in quantized)
