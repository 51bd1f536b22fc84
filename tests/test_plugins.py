"""Plugin discovery through the ``speechforge.plugins`` entry-point group: third-party
packages load with no change to speechforge, and a broken plugin takes nothing else down."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from speechforge.builder import build_model
from speechforge.plugins import create_host

TINY_PLUGIN = '''
from torch import Tensor
import speechforge
from speechforge.interfaces import FeedForward


class Halving(FeedForward):
    """Returns half its input: easy to recognise in a model's output."""

    def __init__(self, *, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model

    def forward(self, x: Tensor) -> Tensor:
        return x * 0.5


@speechforge.hookimpl
def register_components(registry):
    registry.register("ffn", "halving", Halving)
'''


def make_distribution(root: Path, dist: str, module: str, source: str, entry_name: str) -> None:
    """Write an installed-looking distribution (module + .dist-info) under ``root``."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[speechforge.plugins]\n{entry_name} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_third_party_plugin_is_loaded_and_usable(site, tiny_config):
    make_distribution(site, "tiny-plugin", "tiny_plugin", TINY_PLUGIN, "tiny")
    host = create_host()
    plugin = host.plugin("tiny")
    assert plugin.package == "tiny-plugin"
    assert plugin.components == {"ffn": ["halving"]}
    tiny_config["encoder"]["ffn"] = {"type": "halving"}
    model = build_model(tiny_config, host)
    blocks = model.encoder.blocks
    assert type(blocks[0].feed_forward).__name__ == "Halving"
    out = model.encode(torch.randn(2, 8000), torch.tensor([8000, 6000]))[0]
    assert out.shape[0] == 2 and torch.isfinite(out).all()


def test_plugin_that_fails_to_import_is_reported_and_others_load(site, caplog):
    make_distribution(site, "broken-plugin", "broken_plugin", "raise RuntimeError('boom at import')\n", "broken")
    make_distribution(site, "tiny-plugin", "tiny_plugin", TINY_PLUGIN, "tiny")
    host = create_host()
    assert [f.name for f in host.failed] == ["broken"]
    assert "plugin 'broken' (from broken-plugin) failed: RuntimeError: boom at import" in caplog.text
    assert "halving" in host.registry.names("ffn")


def test_plugin_that_fails_to_register_leaves_no_components(site):
    failing = TINY_PLUGIN.replace(
        'registry.register("ffn", "halving", Halving)',
        'registry.register("ffn", "halving", Halving)\n    registry.register("ffn", "dense", Halving)',
    )
    make_distribution(site, "clash-plugin", "clash_plugin", failing, "clash")
    host = create_host()
    (failure,) = host.failed
    assert "registered twice: first by 'speechforge', then by 'clash'" in str(failure.error)
    assert "halving" not in host.registry.names("ffn")
    assert "clash" not in [p.name for p in host.loaded]


def test_core_components_come_first_and_are_attributed_to_speechforge():
    host = create_host()
    core = host.plugin("speechforge")
    assert core.components["encoder"] == ["conformer", "transformer"]
    assert host.registry.get("loss", "ctc").owner == "speechforge"


def test_cli_json_lists_builtin_and_third_party(tmp_path):
    make_distribution(tmp_path, "tiny-plugin", "tiny_plugin", TINY_PLUGIN, "tiny")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(
        [sys.executable, "-m", "speechforge.cli", "plugins", "--json"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    listed = {p["name"]: p for p in json.loads(out)}
    assert listed["tiny"] == {"name": "tiny", "package": "tiny-plugin", "components": {"ffn": ["halving"]}}
    assert listed["speechforge"]["package"] == "speechforge"
    assert set(listed) >= {"speechforge", "tiny"}


def test_every_builtin_plugin_declared_in_pyproject_loads():
    import importlib.metadata
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["entry-points"].get("speechforge.plugins", {})
    installed = {ep.name for ep in importlib.metadata.entry_points(group="speechforge.plugins")}
    assert set(declared) <= installed, "reinstall speechforge (pip install -e .) to refresh entry points"
    host = create_host()
    assert not host.failed, [f.describe() for f in host.failed]
    assert set(declared) <= {p.name for p in host.loaded}
    for name, target in declared.items():
        assert target.startswith("speechforge_plugins."), (name, target)


COMMAND_PLUGIN = '''
import speechforge


def hello(args):
    print(f"hello {args.name}")
    return 0


@speechforge.hookimpl
def add_commands(commands):
    parser = commands.add_parser("hello", help="greet someone")
    parser.add_argument("--name", default="world")
    parser.set_defaults(run=hello)
'''

MISSPELT_HOOK = TINY_PLUGIN + '''

@speechforge.hookimpl
def model_bulit(model, config):
    pass
'''


def test_plugin_subcommand_runs_and_is_attributed_in_help(site, capsys):
    from speechforge.cli import make_parser

    make_distribution(site, "hello-plugin", "hello_plugin", COMMAND_PLUGIN, "hello_cmd")
    parser = make_parser(create_host())
    assert "greet someone [plugin hello_cmd]" in " ".join(parser.format_help().split())
    args = parser.parse_args(["hello", "--name", "ada"])
    assert args.run(args) == 0
    assert capsys.readouterr().out == "hello ada\n"


def test_plugin_taking_a_core_command_name_fails_and_core_keeps_it(site):
    from speechforge.cli import make_parser

    make_distribution(site, "clash-cmd", "clash_cmd", COMMAND_PLUGIN.replace('"hello"', '"decode"'), "clash_cmd")
    host = create_host()
    parser = make_parser(host)
    make_parser(host)  # a second parser must not record a second failure
    (failure,) = host.failed
    assert failure.describe() == (
        "plugin 'clash_cmd' (from clash-cmd) failed: PluginError: "
        "command 'decode' is added twice: first by 'speechforge', then by 'clash_cmd'"
    )
    assert parser.parse_args(["decode", "--exp-dir", "e", "--data", "d"]).run.__module__ == "speechforge.commands.decode"


def test_plugin_with_an_unknown_hook_fails_to_load(site):
    make_distribution(site, "typo-plugin", "typo_plugin", MISSPELT_HOOK, "typo")
    host = create_host()
    (failure,) = host.failed
    assert failure.describe() == (
        "plugin 'typo' (from typo-plugin) failed: PluginError: implements unknown hook 'model_bulit'; did you mean model_built?"
    )
    assert "halving" not in host.registry.names("ffn")
    assert "typo" not in [p.name for p in host.loaded]


def test_cli_lists_plugin_commands_and_names_a_plugin_with_an_unknown_hook(tmp_path):
    make_distribution(tmp_path, "hello-plugin", "hello_plugin", COMMAND_PLUGIN, "hello_cmd")
    make_distribution(tmp_path, "typo-plugin", "typo_plugin", MISSPELT_HOOK, "typo")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    helped = subprocess.run([sys.executable, "-m", "speechforge.cli", "--help"], capture_output=True, text=True, env=env)
    assert helped.returncode == 0
    assert "greet someone [plugin hello_cmd]" in " ".join(helped.stdout.split())
    listed = subprocess.run([sys.executable, "-m", "speechforge.cli", "plugins"], capture_output=True, text=True, env=env)
    assert listed.returncode == 1
    assert "warning: plugin 'typo' (from typo-plugin) failed: PluginError: implements unknown hook 'model_bulit'" in listed.stdout
