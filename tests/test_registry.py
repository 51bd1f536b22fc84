"""Registry behaviour: registration, lookup errors, argument checking, dotted paths."""
from __future__ import annotations

import pytest
from torch import Tensor, nn

from speechforge.errors import ConfigError, RegistryError
from speechforge.interfaces import FeedForward
from speechforge.registry import ComponentRegistry, build_component


class Scaled(FeedForward):
    def __init__(self, *, d_model: int, scale: float = 2.0) -> None:
        super().__init__()
        self.d_model, self.scale = d_model, scale

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class Wrapper(FeedForward):
    """Builds a child ffn, to check nested paths."""

    def __init__(self, *, d_model: int, inner: dict) -> None:
        super().__init__()
        self.inner = build_component("ffn", inner, "inner", d_model=d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)


@pytest.fixture
def registry() -> ComponentRegistry:
    reg = ComponentRegistry()
    reg.add_kind("ffn", FeedForward)
    with reg.owned_by("alpha"):
        reg.register("ffn", "scaled", Scaled)
        reg.register("ffn", "wrapper", Wrapper)
    return reg


def test_build_passes_config_and_declared_context(registry):
    ffn = registry.build("ffn", {"type": "scaled", "scale": 3.0}, "ffn", d_model=8, heads=2)
    assert (ffn.d_model, ffn.scale) == (8, 3.0)


def test_name_alone_builds_with_defaults(registry):
    assert registry.build("ffn", "scaled", "ffn", d_model=4).scale == 2.0


def test_duplicate_name_names_both_owners(registry):
    with registry.owned_by("beta"), pytest.raises(RegistryError, match="first by 'alpha', then by 'beta'"):
        registry.register("ffn", "scaled", Scaled)


def test_unknown_name_lists_known_and_closest(registry):
    with pytest.raises(RegistryError, match=r"unknown ffn 'scald'; known: scaled, wrapper; did you mean scaled\?"):
        registry.build("ffn", {"type": "scald"}, "ffn", d_model=4)


def test_unknown_kind(registry):
    with pytest.raises(RegistryError, match="unknown registry kind 'fn'.*did you mean ffn"):
        registry.names("fn")


def test_misspelt_key_names_dotted_path_and_closest(registry):
    with pytest.raises(ConfigError, match=r"^encoder\.ffn\.scal: unknown key for ffn 'scaled'; did you mean scale\?"):
        registry.build("ffn", {"type": "scaled", "scal": 1.0}, "encoder.ffn", d_model=4)


def test_nested_component_errors_carry_full_path(registry):
    config = {"type": "wrapper", "inner": {"type": "scaled", "scael": 1}}
    with pytest.raises(ConfigError, match=r"^ffn\.inner\.scael: unknown key"):
        registry.build("ffn", config, "ffn", d_model=4)


def test_context_keys_cannot_be_set_in_config(registry):
    with pytest.raises(ConfigError, match=r"ffn\.d_model: set by the parent"):
        registry.build("ffn", {"type": "scaled", "d_model": 3}, "ffn", d_model=4)


def test_missing_required_argument(registry):
    with pytest.raises(ConfigError, match=r"ffn: ffn 'scaled' needs ffn\.d_model"):
        registry.build("ffn", "scaled", "ffn")


def test_missing_type_key(registry):
    with pytest.raises(ConfigError, match=r"ffn\.type: missing"):
        registry.build("ffn", {"scale": 1.0}, "ffn", d_model=4)


def test_class_must_subclass_kind_base(registry):
    with pytest.raises(RegistryError, match="not a subclass of FeedForward"):
        registry.register("ffn", "linear", nn.Linear)


def test_function_factory_result_is_checked(registry):
    registry.register("ffn", "bad", lambda: nn.Identity())
    with pytest.raises(RegistryError, match="built a Identity, not a FeedForward"):
        registry.build("ffn", "bad", "ffn")


def test_remove_owner_drops_only_its_components(registry):
    with registry.owned_by("beta"):
        registry.register("ffn", "other", Scaled)
    registry.remove_owner("beta")
    assert registry.names("ffn") == ["scaled", "wrapper"]


def test_plugin_may_add_a_kind(registry):
    registry.add_kind("vocoder", nn.Module)
    registry.register("vocoder", "identity", nn.Identity)
    assert isinstance(registry.build("vocoder", "identity", "vocoder"), nn.Identity)
    with pytest.raises(RegistryError, match="declared twice"):
        registry.add_kind("vocoder", nn.Module)
