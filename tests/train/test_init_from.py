"""train.init_from: glob selection, prefix renaming, counts, errors, exp-dir resolution."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from speechforge.errors import CheckpointError, ConfigError
from speechforge.train.checkpoint import save_checkpoint
from speechforge.train.init_from import init_from, renamed
from speechforge.train.options import InitFromOptions


class Student(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.encoder = nn.Linear(width, width)
        self.head = nn.Linear(width, 3)


@pytest.fixture
def teacher_file(tmp_path):
    teacher = nn.ModuleDict({"backbone": nn.Linear(4, 4), "predictor": nn.Linear(4, 2)})
    path = tmp_path / "teacher.pt"
    save_checkpoint({"model": teacher.state_dict()}, path)
    return path, teacher


def test_selected_tensors_load_under_their_new_names_and_the_rest_stays(teacher_file):
    path, teacher = teacher_file
    student = Student()
    head_before = student.head.weight.clone()
    options = InitFromOptions(checkpoint=str(path), include=["backbone.*"], rename={"backbone.": "encoder."})
    report = init_from(student, options)
    assert torch.equal(student.encoder.weight, teacher["backbone"].weight)
    assert torch.equal(student.encoder.bias, teacher["backbone"].bias)
    assert torch.equal(student.head.weight, head_before)
    assert (report.loaded, report.excluded, report.unmatched, report.new) == (2, 2, 0, 2)


def test_exclude_wins_over_include_and_unmatched_names_are_counted(teacher_file):
    path, _ = teacher_file
    student = Student()
    bias_before = student.encoder.bias.clone()
    options = InitFromOptions(checkpoint=str(path), exclude=["*.bias"], rename={"backbone.": "encoder."})
    report = init_from(student, options)
    assert torch.equal(student.encoder.bias, bias_before)
    assert (report.loaded, report.excluded, report.unmatched, report.new) == (1, 2, 1, 3)  # predictor.weight: not in the model


def test_shape_mismatch_names_the_key_and_both_shapes(teacher_file):
    path, _ = teacher_file
    options = InitFromOptions(checkpoint=str(path), rename={"backbone.": "encoder."})
    with pytest.raises(CheckpointError, match=r"backbone\.weight has shape \(4, 4\), the model's encoder\.weight \(8, 8\)"):
        init_from(Student(width=8), options)


def test_nothing_that_fits_is_an_error_naming_the_options(teacher_file):
    path, _ = teacher_file
    with pytest.raises(ConfigError, match=r"no tensor of .*teacher\.pt fits the model .*rename \{'enc\.': 'encoder\.'\}"):
        init_from(Student(), InitFromOptions(checkpoint=str(path), rename={"enc.": "encoder."}))


def test_missing_checkpoint_and_missing_key_are_errors(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere.pt: no such file or experiment dir"):
        init_from(Student(), InitFromOptions(checkpoint=str(tmp_path / "nowhere.pt")))
    with pytest.raises(CheckpointError, match="no model_avg.pt and no checkpoints/latest"):
        init_from(Student(), InitFromOptions(checkpoint=str(tmp_path)))
    with pytest.raises(ConfigError, match="train.init_from.checkpoint: missing"):
        init_from(Student(), InitFromOptions(include=["encoder.*"]))


def test_an_experiment_dir_means_its_averaged_model_first(tmp_path):
    source = Student()
    (tmp_path / "checkpoints").mkdir()
    save_checkpoint({"model": Student().state_dict()}, tmp_path / "checkpoints" / "step_1.pt")
    (tmp_path / "checkpoints" / "latest").write_text("step_1.pt\n")
    save_checkpoint({"model": source.state_dict()}, tmp_path / "model_avg.pt")
    student = Student()
    init_from(student, InitFromOptions(checkpoint=str(tmp_path)))
    assert torch.equal(student.head.weight, source.head.weight)


def test_rename_replaces_the_first_matching_prefix_only():
    assert renamed("a.b.a.c", {"a.": "x."}) == "x.b.a.c"
    assert renamed("q.w", {"a.": "x."}) == "q.w"


def test_trainer_rejects_bad_init_from_and_subset_keys(tmp_path):
    from speechforge.train.trainer import Trainer

    base = {"encoder": {"type": "conformer"}, "losses": [{"type": "ctc"}], "data": {"train": str(tmp_path)}}
    with pytest.raises(ConfigError, match=r"train\.init_from\.checkpont: unknown key; did you mean checkpoint\?"):
        Trainer({**base, "train": {"init_from": {"checkpont": "exp/ssl"}}}, tmp_path)
    with pytest.raises(ConfigError, match="data.subset: give exactly one of fraction, utterances, hours; got fraction, utterances"):
        Trainer({**base, "data": {"train": str(tmp_path), "subset": {"fraction": 0.5, "utterances": 3}}}, tmp_path)
