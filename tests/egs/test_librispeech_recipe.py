"""The librispeech recipe, every stage, on a tiny synthetic corpus (a few dozen utterances,
a few training steps): it must reach report.md and results.json."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_recipe_runs_every_stage_to_a_report(tmp_path):
    recipe = tmp_path / "egs" / "librispeech"
    recipe.mkdir(parents=True)
    shutil.copy(REPO / "egs" / "librispeech" / "run.sh", recipe)
    shutil.copytree(REPO / "egs" / "librispeech" / "conf", recipe / "conf")
    (tmp_path / "tools").symlink_to(REPO / "tools")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [
            "bash", str(recipe / "run.sh"), "--train-utts", "24", "--eval-utts", "6", "--tag", "tiny",
            "encoder.num_blocks=1", "encoder.d_model=32", "encoder.ffn.hidden=64",
            "train.max_epochs=2", "train.progress_bar=false", "train.precision=fp32", "data.max_seconds=40", "decode.beam_size=3",
        ],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    exp = recipe / done.stdout.strip().splitlines()[-1]
    assert exp.name == "ctc_conformer_small_tiny"
    results = json.loads((exp / "results.json").read_text())
    assert {(r["set"], r["method"]) for r in results} == {
        (s, m)
        for s in ("dev-clean", "test-clean")
        for m in ("ctc_greedy_search", "ctc_prefix_beam_search", "ctc_prefix_beam_search_lm")
    }
    for row in results:
        assert set(row) == {"set", "method", "wer", "cer", "num_utts", "rtf"}
        assert row["num_utts"] == 6 and row["wer"] >= 0 and row["rtf"] > 0
    report = (exp / "report.md").read_text()
    assert "| test-clean | ctc_greedy_search |" in report
    assert (exp / "lm" / "lm.arpa").read_text(encoding="utf-8").lstrip().startswith("\\data\\")
    for figure in ("loss.png", "wer_curve.png", "model_avg.pt", "config.yaml"):
        assert (exp / figure).is_file(), figure
    for stage in range(9):
        assert f"[stage {stage}]" in done.stderr
