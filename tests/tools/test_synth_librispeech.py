"""Tests for tools/synth_librispeech: LibriSpeech layout, clean transcripts, real audio,
byte-exact determinism, held-out dev/test material, resume and skip behaviour."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

PACKAGE = Path(__file__).resolve().parents[2] / "tools" / "synth_librispeech"
SPLITS = ("train-clean-100", "dev-clean", "test-clean")
SIZES = {"train-clean-100": 8, "dev-clean": 3, "test-clean": 3}
TINY = ["--train-utts", "8", "--dev-utts", "3", "--test-utts", "3",
        "--train-speakers", "3", "--eval-speakers", "2", "--seed", "7"]
TRANS_LINE = re.compile(r"(\d+)-(\d+)-(\d{4}) ([A-Z']+(?: [A-Z']+)*)")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PACKAGE), *args],
                          capture_output=True, text=True, timeout=120)


def generate(out: Path, *extra: str) -> subprocess.CompletedProcess:
    result = run_cli("--out", str(out), *TINY, *extra)
    assert result.returncode == 0, result.stderr
    return result


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def transcripts(root: Path, split: str) -> dict[str, str]:
    lines = (line for f in (root / split).glob("*/*/*.trans.txt")
             for line in f.read_text().splitlines())
    return dict(line.split(" ", 1) for line in lines)


@pytest.fixture(scope="module")
def synth():
    spec = importlib.util.spec_from_file_location(
        "synth_librispeech", PACKAGE / "__init__.py", submodule_search_locations=[str(PACKAGE)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    for name in [n for n in sys.modules if n.partition(".")[0] == spec.name]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, str]:
    """A tiny corpus made in-process (--jobs 1); returns (OUT/LibriSpeech, stdout)."""
    out = tmp_path_factory.mktemp("synth_jobs1")
    result = generate(out, "--jobs", "1")
    return out / "LibriSpeech", result.stdout


def test_help_documents_every_flag():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--out", "--train-utts", "--dev-utts", "--test-utts", "--train-speakers",
                 "--eval-speakers", "--seed", "--jobs", "--overwrite"):
        assert flag in result.stdout


def test_runs_as_a_module_with_tools_on_the_path():
    path = [str(PACKAGE.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    result = subprocess.run([sys.executable, "-m", "synth_librispeech", "--help"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: synth_librispeech ")


def test_layout_matches_librispeech(corpus):
    root, _ = corpus
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(SPLITS)
    for split in SPLITS:
        count = 0
        for speaker in (root / split).iterdir():
            assert speaker.name.isdigit() and speaker.is_dir()
            for chapter in speaker.iterdir():
                assert chapter.name.isdigit() and chapter.is_dir()
                stem = f"{speaker.name}-{chapter.name}"
                flacs = sorted(p.name for p in chapter.glob("*.flac"))
                assert flacs == [f"{stem}-{i:04d}.flac" for i in range(len(flacs))]
                assert sorted(p.name for p in chapter.iterdir()) == sorted(
                    flacs + [f"{stem}.trans.txt"])  # nothing else, no temporary files
                count += len(flacs)
        assert count == SIZES[split]  # the size flags are honoured
    for name in ("SPEAKERS.TXT", "CHAPTERS.TXT", ".complete"):
        assert (root / name).is_file()


def test_transcripts_are_librispeech_style(corpus):
    root, _ = corpus
    for trans in root.glob("*/*/*/*.trans.txt"):
        speaker, chapter = trans.parent.parent.name, trans.parent.name
        lines = trans.read_text().splitlines()
        ids = []
        for line in lines:
            match = TRANS_LINE.fullmatch(line)
            assert match, line
            assert (match[1], match[2]) == (speaker, chapter)
            assert 5 <= len(match[4].split()) <= 15
            ids.append(f"{match[1]}-{match[2]}-{match[3]}")
        assert ids == sorted(ids)
        assert ids == sorted(p.stem for p in trans.parent.glob("*.flac"))


def test_audio_is_16k_mono_flac_with_speech(corpus):
    root, _ = corpus
    flacs = sorted(root.glob("*/*/*/*.flac"))
    assert len(flacs) == sum(SIZES.values())
    for flac in flacs:
        info = sf.info(str(flac))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (
            16000, 1, "FLAC", "PCM_16")
        audio, _ = sf.read(str(flac), dtype="float64")
        assert 1.0 < len(audio) / 16000 < 12.0
        rms_db = 20 * np.log10(np.sqrt(np.mean(audio**2)))
        assert -40 < rms_db < -10
        assert np.abs(audio).max() < 1.0
        # 50 ms at the start is leading silence with light noise, far below the speech level
        lead_db = 20 * np.log10(np.sqrt(np.mean(audio[:800] ** 2)))
        assert -90 < lead_db < rms_db - 15


def test_same_seed_gives_identical_bytes_for_any_jobs(corpus, tmp_path):
    root, _ = corpus
    generate(tmp_path, "--jobs", "2")
    assert tree_bytes(tmp_path / "LibriSpeech") == tree_bytes(root)


def test_dev_and_test_are_held_out(corpus):
    root, _ = corpus
    texts = {split: set(transcripts(root, split).values()) for split in SPLITS}
    assert not texts["train-clean-100"] & texts["dev-clean"]
    assert not texts["train-clean-100"] & texts["test-clean"]
    assert not texts["dev-clean"] & texts["test-clean"]
    stats = json.loads((root / ".complete").read_text())["splits"]
    variants = {split: {v.split("+")[1] for v in stats[split]["voices"]} for split in SPLITS}
    assert not variants["train-clean-100"] & (variants["dev-clean"] | variants["test-clean"])
    assert not variants["dev-clean"] & variants["test-clean"]
    speakers = {split: {p.name for p in (root / split).iterdir()} for split in SPLITS}
    assert sum(map(len, speakers.values())) == len(set().union(*speakers.values()))


def test_summary_then_rerun_skips(corpus):
    root, stdout = corpus
    lines = stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == list(SPLITS)
    assert all(re.search(r"\d+ utterances, [\d.]+ h, .* generated in [\d.]+ s", x) for x in lines)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    again = generate(root.parent, "--jobs", "1")
    assert "already complete" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_other_settings_are_refused(corpus):
    root, _ = corpus
    result = run_cli("--out", str(root.parent), *TINY, "--train-utts", "9")
    assert result.returncode == 1
    assert "--overwrite" in result.stderr and "train_utts" in result.stderr


def test_interrupted_run_resumes_to_identical_output(corpus, tmp_path):
    root, _ = corpus
    copy = tmp_path / "LibriSpeech"
    shutil.copytree(root, copy)
    (copy / ".complete").unlink()
    victim = sorted(copy.glob("train-clean-100/*/*/*.flac"))[0]
    victim.unlink()
    next(victim.parent.glob("*.trans.txt")).unlink()
    (victim.parent / f".{victim.name}.123.tmp").write_bytes(b"half a file")
    generate(tmp_path, "--jobs", "1")
    assert tree_bytes(copy) == tree_bytes(root)


def test_grammar_gives_clean_varied_sentences(synth):
    generator = synth.SentenceGenerator()
    assert len(generator.vocabulary()) >= 3000
    rng = random.Random(1)
    sentences = [generator.sentence(rng) for _ in range(500)]
    for sentence in sentences:
        assert re.fullmatch(r"[A-Z']+(?: [A-Z']+)*", sentence.transcript), sentence
        assert 5 <= len(sentence.transcript.split()) <= 15
        spoken_words = re.sub(r"[^A-Za-z' ]", "", sentence.spoken).upper()
        assert spoken_words == sentence.transcript
    assert len({s.transcript for s in sentences}) > 490
    assert len({w for s in sentences for w in s.transcript.split()}) > 1000


def test_plan_follows_seed_and_keeps_held_out_sets_stable(synth):
    generator = synth.SentenceGenerator()
    params = {"format_version": 1, "seed": 3, "train_utts": 120, "dev_utts": 10,
              "test_utts": 10, "train_speakers": 2, "eval_speakers": 2}

    def texts(plan, split):
        return [u.transcript for c in plan[split] for u in c.utterances]

    plan = synth.build_plan(params, generator)
    assert len(texts(plan, "train-clean-100")) == 120
    assert all(len(c.utterances) <= 50 for c in plan["train-clean-100"])
    bigger = synth.build_plan({**params, "train_utts": 200}, generator)
    for split in ("dev-clean", "test-clean"):
        assert texts(bigger, split) == texts(plan, split)
    reseeded = synth.build_plan({**params, "seed": 4}, generator)
    assert texts(reseeded, "test-clean") != texts(plan, "test-clean")


def test_unloadable_espeak_library_names_the_path(synth, monkeypatch):
    import espeakng_loader

    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: "/nonexistent/libespeak.so")
    with pytest.raises(synth.SynthError, match="/nonexistent/libespeak.so"):
        synth.ESpeakEngine()
