"""The plugin kit through the CLI in subprocesses: ``plugins new`` writes packages that pass
their own tests and ``plugins --check``; the example package checks clean; a broken package has
each problem reported by name; ``plugins --show`` leads from a YAML type to its code. Packages
are pip-installed into temporary folders on PYTHONPATH (one install per package per session),
never into the environment. Hook and failed-plugin errors are checked in process."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from speechforge.builder import build_model
from speechforge.errors import ConfigError, PluginError, RegistryError
from speechforge.plugins import create_host
from speechforge.scaffold import KINDS, PluginNames, write_package

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "speechforge-plugin-example"


def pip_install(site: Path, *sources: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), *map(str, sources)],
        check=True, capture_output=True, text=True, timeout=300,
    )


def speechforge(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "speechforge.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.fixture(scope="session")
def kit(tmp_path_factory) -> tuple[Path, Path]:
    """One scaffolded package per kind (the first written by the CLI, the others by the
    function it calls, to save interpreter start-ups) and a copy of the example package, all
    installed into one site. Returns (packages folder, site)."""
    root, site = tmp_path_factory.mktemp("kit"), tmp_path_factory.mktemp("kit-site")
    made = speechforge(site, "plugins", "new", f"demo-{KINDS[0]}", "--kind", KINDS[0], "--dir", str(root))
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"wrote {root / 'demo-ffn'}: the ffn 'demo_ffn' in demo_ffn/ffn.py (5 files)")
    for kind in KINDS[1:]:
        write_package(PluginNames.from_distribution(f"demo-{kind}"), kind, root)
    shutil.copytree(EXAMPLE, root / EXAMPLE.name, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip_install(site, *(root / f"demo-{kind}" for kind in KINDS), root / EXAMPLE.name)
    return root, site


@pytest.fixture(scope="session")
def example_site(kit) -> Path:
    return kit[1]


@pytest.fixture(scope="session")
def kit_checked(kit) -> dict[str, str]:
    """One ``plugins --check`` of every kit package; its report per distribution."""
    names = [f"demo-{kind}" for kind in KINDS] + [EXAMPLE.name]
    checked = speechforge(kit[1], "plugins", "--check", *names)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    reports: dict[str, str] = {}
    current = ""
    for line in checked.stdout.splitlines():
        first = line.split(" ", 1)[0]
        if first in names:  # each report opens with "DISTRIBUTION VERSION: ..."
            current = first
        reports[current] = reports.get(current, "") + line + "\n"
    assert list(reports) == names, checked.stdout
    return reports


BROKEN = {
    "pyproject.toml": '''
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "broken-kit"
        version = "0.1.0"

        [project.entry-points."speechforge.plugins"]
        broken_typo = "broken_kit.typo"
        broken_clash = "broken_kit.clash"
        broken_build = "broken_kit.explode"

        [tool.setuptools]
        packages = ["broken_kit"]
    ''',
    "broken_kit/__init__.py": "",
    "broken_kit/typo.py": '''
        import speechforge

        @speechforge.hookimpl
        def model_bulit(model, config):
            pass
    ''',
    "broken_kit/clash.py": '''
        import speechforge
        from speechforge.modules.feed_forward import PositionwiseFeedForward

        @speechforge.hookimpl
        def register_components(registry):
            registry.register("ffn", "dense", PositionwiseFeedForward)
    ''',
    "broken_kit/explode.py": '''
        import speechforge
        from speechforge.interfaces import FeedForward

        class Exploding(FeedForward):
            def __init__(self, *, d_model: int) -> None:
                raise RuntimeError("no weights for you")

            def forward(self, x):
                return x

        @speechforge.hookimpl
        def register_components(registry):
            registry.register("ffn", "exploding", Exploding)
    ''',
    "broken_kit/hooks.py": '''
        import speechforge

        @speechforge.hookimpl
        def after_train_step(model, step, losses):
            return {"never": 1.0}

        @speechforge.hookimpl
        def train_step_done(model):
            pass
    ''',
}


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory) -> Path:
    source, site = tmp_path_factory.mktemp("broken"), tmp_path_factory.mktemp("broken-site")
    for name, text in BROKEN.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(textwrap.dedent(text).lstrip())
    pip_install(site, source)
    return site


@pytest.mark.slow
def test_scaffolded_packages_and_the_example_pass_their_own_tests_and_the_check(kit, kit_checked):
    root, site = kit
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    tests = [str(root / f"demo-{kind}" / "tests") for kind in KINDS] + [str(root / EXAMPLE.name / "tests")]
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib", *tests],
        capture_output=True, text=True, env=env, cwd=root, timeout=600,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"{3 * 3 + 2 + 6} passed" in ran.stdout  # ffn/attention/loss: 3 tests each, search: 2, example: 6
    for kind in KINDS:
        report = kit_checked[f"demo-{kind}"]
        component = f"{kind} 'demo_{kind}' (demo_{kind}.{kind}:Demo{kind.capitalize()})"
        expected = "not probed (kind 'search' has no shape contract)" if kind == "search" else "probed, "
        assert f"  {component}: {expected}" in report
        assert report.rstrip().endswith("OK")


def test_scaffold_refuses_bad_names_unknown_kinds_and_existing_folders(tmp_path):
    with pytest.raises(ConfigError, match=r"plugin name 'My FFN': use lower-case letters"):
        PluginNames.from_distribution("My FFN")
    names = PluginNames.from_distribution("speechforge-swish-ffn")
    assert (names.package, names.component, names.class_name) == ("speechforge_swish_ffn", "swish_ffn", "SwishFfn")
    with pytest.raises(ConfigError, match=r"--kind 'encoder': the scaffold knows ffn, attention, loss, search"):
        write_package(names, "encoder", tmp_path)
    write_package(names, "ffn", tmp_path)
    with pytest.raises(ConfigError, match=r"speechforge-swish-ffn: already exists"):
        write_package(names, "ffn", tmp_path)


@pytest.mark.slow
def test_the_example_checks_clean_and_shows_its_gated_ffn(example_site, kit_checked):
    report = kit_checked[EXAMPLE.name]
    assert "ffn 'gated' (speechforge_plugin_example.ffn:GatedFeedForward): probed, output (2, 7, 16)" in report
    assert "gate 'swish' (speechforge_plugin_example.gate:SwishGate): not probed (kind 'gate' has no shape contract)" in report
    assert report.rstrip().endswith("OK")
    shown = speechforge(example_site, "plugins", "--show", "ffn", "gated")
    assert shown.returncode == 0, shown.stderr
    lines = [" ".join(line.split()) for line in shown.stdout.splitlines()]
    assert "provided by plugin speechforge_plugin_example (package speechforge-plugin-example)" in lines
    assert "code: speechforge_plugin_example.ffn:GatedFeedForward" in lines
    assert "d_model int (from the parent) D, given by the encoder block (context, not a config key)." in lines
    assert "hidden int 1024 H, width of the value and gate projections." in lines


def test_show_prints_the_keys_of_a_component_of_a_plugin_kind(example_site, monkeypatch):
    from speechforge.component_info import show_component

    monkeypatch.syspath_prepend(str(example_site))
    lines = [" ".join(line.split()) for line in show_component(create_host(), "gate", "swish")]
    assert lines[:3] == [
        "gate swish",
        "provided by plugin speechforge_plugin_example (package speechforge-plugin-example)",
        "code: speechforge_plugin_example.gate:SwishGate",
    ]
    assert "beta float 1.0 the slope inside the sigmoid." in lines


@pytest.mark.slow
def test_the_example_and_the_recipe_config_build_a_model(example_site, monkeypatch):
    monkeypatch.syspath_prepend(str(example_site))
    from speechforge.config import load_config

    config = load_config(ROOT / "egs" / "librispeech" / "conf" / "ctc_conformer_gated_ffn_small.yaml", ["vocab_size=30"])
    model = build_model(config, create_host())
    ffn = model.encoder.blocks[0].feed_forward
    assert type(ffn).__name__ == "GatedFeedForward" and type(ffn.gate).__name__ == "SwishGate"
    dense = sum(p.numel() for p in build_model(load_config(ROOT / "egs/librispeech/conf/ctc_conformer_small.yaml", ["vocab_size=30"]), create_host()).parameters())
    assert abs(sum(p.numel() for p in model.parameters()) - dense) / dense < 0.01  # "keeps the FFN's parameters"


@pytest.mark.slow
def test_the_check_reports_each_problem_of_a_broken_package_by_name(broken_site):
    checked = speechforge(broken_site, "plugins", "--check", "broken-kit")
    assert checked.returncode == 1
    problems = [line.removeprefix("  PROBLEM: ") for line in checked.stdout.splitlines() if line.startswith("  PROBLEM: ")]
    assert problems == [
        "ffn 'exploding' (broken_kit.explode:Exploding) failed the probe: RuntimeError: no weights for you",
        "plugin 'broken_clash' (from broken-kit) failed: RegistryError: ffn 'dense' is registered twice: "
        "first by 'speechforge', then by 'broken_clash'",
        "plugin 'broken_typo' (from broken-kit) failed: PluginError: implements unknown hook 'model_bulit'; did you mean model_built?",
        "hook implementation broken_kit.hooks:after_train_step is not reachable from the entry-point module "
        "(import it there, or point the entry point at its module), so it is never called",
        "hook implementation broken_kit.hooks:train_step_done names no hook spec; did you mean after_train_step?",
    ], checked.stdout
    missing = speechforge(broken_site, "plugins", "--check", "no-such-dist")
    assert missing.returncode == 2 and "no-such-dist: no such distribution is installed" in missing.stderr


def make_distribution(root: Path, dist: str, module: str, source: str, entry_name: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[speechforge.plugins]\n{entry_name} = {module}\n")


HALVING = '''
import speechforge
from speechforge.interfaces import FeedForward


class Halving(FeedForward):
    def __init__(self, *, d_model: int) -> None:
        super().__init__()

    def forward(self, x):
        return x * 0.5


@speechforge.hookimpl
def register_components(registry):
    registry.register("ffn", "halving", Halving)
'''


def test_a_lifecycle_hook_that_raises_names_the_plugin_and_the_hook(tmp_path, monkeypatch, tiny_config):
    monkeypatch.syspath_prepend(str(tmp_path))
    hook = HALVING + '''

@speechforge.hookimpl
def model_built(model, config):
    raise RuntimeError("cannot quantize this")
'''
    make_distribution(tmp_path, "grumpy-plugin", "grumpy_plugin", hook, "grumpy")
    with pytest.raises(PluginError, match=r"^plugin 'grumpy' \(from grumpy-plugin\) failed in hook model_built: RuntimeError: cannot quantize this$") as caught:
        build_model(tiny_config, create_host())
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_a_lifecycle_hook_error_stops_the_command_with_exit_2(tmp_path, tiny_config):
    import yaml

    make_distribution(tmp_path, "grumpy-plugin", "grumpy_plugin", HALVING + '''

@speechforge.hookimpl
def report_sections(exp_dir, config):
    raise KeyError("figure")
''', "grumpy")
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "config.yaml").write_text(yaml.safe_dump(tiny_config))
    done = speechforge(tmp_path, "report", "--exp-dir", str(tmp_path / "exp"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error: plugin 'grumpy' (from grumpy-plugin) failed in hook report_sections: KeyError: 'figure'" in done.stderr


def test_a_component_of_a_failed_plugin_names_that_plugin_and_others_keep_working(tmp_path, monkeypatch, tiny_config):
    monkeypatch.syspath_prepend(str(tmp_path))
    half_way = HALVING.replace(
        'registry.register("ffn", "halving", Halving)',
        'registry.register("ffn", "halving", Halving)\n    raise ValueError("missing kernel")',
    )
    make_distribution(tmp_path, "half-plugin", "half_plugin", half_way, "half")
    make_distribution(tmp_path, "gone-plugin", "gone_plugin", "import no_such_module\n", "gone")
    make_distribution(tmp_path, "fine-plugin", "fine_plugin", HALVING.replace('"halving"', '"quarter"'), "fine")
    host = create_host()
    tiny_config["encoder"]["ffn"] = {"type": "halving"}
    with pytest.raises(RegistryError) as caught:
        build_model(tiny_config, host)
    assert str(caught.value).endswith(
        "; it comes from plugin 'half' (from half-plugin) failed: ValueError: missing kernel"
    ), caught.value
    tiny_config["encoder"]["ffn"] = {"type": "nowhere"}
    with pytest.raises(RegistryError, match=r"it may come from plugin 'gone' \(from gone-plugin\) failed: ModuleNotFoundError"):
        build_model(tiny_config, host)
    tiny_config["encoder"]["ffn"] = {"type": "quarter"}
    assert type(build_model(tiny_config, host).encoder.blocks[0].feed_forward).__name__ == "Halving"


def test_the_builtin_plugins_check_clean_and_a_loss_needing_a_decoder_is_not_probed():
    from speechforge.plugin_check import check_distribution

    report = check_distribution(create_host(), "speechforge")
    assert report.problems == [], report.lines
    assert "  attention 'flash' (speechforge_plugins.flash_attention.plugin:build_flash_attention): probed, output (2, 7, 16)" in report.lines
    assert (
        "  loss 'attention' (speechforge_plugins.u2pp.attention_loss:AttentionLoss): not probed (the probe model "
        "cannot hold it: losses.0 needs a decoder of kind AttentionDecoder; the model has none "
        "(add one under decoder: or decoders:))"
    ) in report.lines
