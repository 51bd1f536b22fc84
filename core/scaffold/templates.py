'''The files ``speechforge plugins new`` writes, as :class:`string.Template` strings.

Placeholders: ``$distribution`` (``my-ffn``), ``$package`` (``my_ffn``, also the entry-point
name), ``$component`` (the registered name), ``$Class``, ``$kind`` and, in the README,
``$config_snippet``. One component template per kind, each with its test.
'''
from __future__ import annotations

PYPROJECT = '''
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "$distribution"
version = "0.1.0"
description = "speechforge plugin: the $kind component $component"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["speechforge"]

[project.optional-dependencies]
dev = ["pytest>=7.4"]

# speechforge loads every module named in this group; the name is the plugin's name.
[project.entry-points."speechforge.plugins"]
$package = "$package"

[tool.setuptools]
packages = ["$package"]
'''

README = '''
# $distribution

A speechforge plugin: the `$kind` component `$component`.

```yaml
$config_snippet
```

```bash
pip install .  # speechforge finds the plugin through its entry point
python -m pytest tests  # builds a model with $component
speechforge plugins --check $distribution  # hooks, names, a forward pass of the contract
speechforge plugins --show $kind $component  # its keys, defaults, and where its code is
```
'''

PLUGIN_MODULE = '''
"""$distribution: registers the $kind component ``$component`` with speechforge."""
from __future__ import annotations

import speechforge
from speechforge.registry import ComponentRegistry

from $package.$kind import $Class


@speechforge.hookimpl
def register_components(registry: ComponentRegistry) -> None:
    registry.register("$kind", "$component", $Class)
'''

FFN = '''
"""The ``$component`` feed-forward network (kind ``ffn``)."""
from __future__ import annotations

from torch import Tensor, nn

from speechforge.interfaces import FeedForward


class $Class(FeedForward):
    """Position-wise feed-forward: Linear(D, hidden), SiLU, dropout, Linear(hidden, D).

    Args:
        d_model: D, given by the encoder block (context, not a config key).
        hidden: width of the inner layer.
        dropout: dropout after the activation, in training only.
    """

    def __init__(self, *, d_model: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.w_in = nn.Linear(d_model, hidden)
        self.activation = nn.SiLU()
        self.dropout = nn.Dropout(dropout)
        self.w_out = nn.Linear(hidden, d_model)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, T, D). Returns (B, T, D)."""
        return self.w_out(self.dropout(self.activation(self.w_in(x))))
'''

ATTENTION = '''
"""The ``$component`` attention (kind ``attention``)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from speechforge.interfaces import Attention


class $Class(Attention):
    """Multi-head scaled dot-product attention with absolute positions.

    It keeps no streaming cache (``initial_cache`` raises), so ``cache`` is always None.

    Args:
        d_model: D, given by the encoder block (context).
        heads: H, given by the encoder block (context); D must be divisible by H.
        dropout: dropout on the attention probabilities, in training only.
    """

    def __init__(self, *, d_model: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.linear_q = nn.Linear(d_model, d_model)
        self.linear_k = nn.Linear(d_model, d_model)
        self.linear_v = nn.Linear(d_model, d_model)
        self.linear_out = nn.Linear(d_model, d_model)

    def _split(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, H, T, D/H)."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None,
        pos_emb: Tensor | None = None,
        cache: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Args: query (B, Tq, D), key/value (B, Tk, D), mask (B, 1, Tk) or (B, Tq, Tk) bool
        (True = attend) or None. Returns (B, Tq, D) and None (no cache)."""
        q, k, v = self._split(self.linear_q(query)), self._split(self.linear_k(key)), self._split(self.linear_v(value))
        keep = None
        if mask is not None:
            keep = mask.unsqueeze(1)  # (B, 1, Tq or 1, Tk)
            empty = ~keep.any(dim=-1, keepdim=True)  # rows with nothing to attend to
            keep = keep | empty  # attend anywhere there (finite gradients), zeroed below
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=self.dropout if self.training else 0.0)
        if mask is not None:
            out = out.masked_fill(empty, 0.0)
        return self.linear_out(out.transpose(1, 2).flatten(2)), None
'''

LOSS = '''
"""The ``$component`` loss (kind ``loss``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from speechforge.interfaces import Loss, LossInputs, LossOutput


class $Class(Loss):
    """CTC with label smoothing toward the uniform distribution: (1 - smoothing) * CTC +
    smoothing * mean over valid frames of the cross-entropy to uniform, both summed per
    utterance and averaged over the batch. Uses the model's CTC head (``needs_ctc_head``).

    Args:
        smoothing: weight of the uniform term, in [0, 1).
        blank_id: the CTC blank token.
    """

    needs_ctc_head = True

    def __init__(self, *, smoothing: float = 0.1, blank_id: int = 0) -> None:
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing
        self.blank_id = blank_id

    def forward(self, inputs: LossInputs) -> LossOutput:
        log_probs = inputs.model.find_ctc_head("loss $component")(inputs.encoder_out)  # (B, T, V)
        batch, frames, _ = log_probs.shape
        ctc = F.ctc_loss(
            log_probs.transpose(0, 1), inputs.targets.clamp(min=0), inputs.encoder_lens, inputs.target_lens,
            blank=self.blank_id, reduction="sum", zero_infinity=True,
        ) / batch
        valid = (torch.arange(frames, device=log_probs.device) < inputs.encoder_lens[:, None]).float()  # (B, T)
        uniform = -(log_probs.mean(dim=-1) * valid).sum() / batch
        loss = (1.0 - self.smoothing) * ctc + self.smoothing * uniform
        return LossOutput(loss, {"ctc": ctc.detach(), "uniform": uniform.detach()})
'''

SEARCH = '''
"""The ``$component`` decoding method (kind ``search``)."""
from __future__ import annotations

from torch import Tensor

from speechforge.asr_model import ASRModel
from speechforge.interfaces import SearchMethod


class $Class(SearchMethod):
    """Greedy CTC decoding that drops frames the model is unsure of: the best token per frame,
    kept only where its probability reaches ``min_prob``, then repeats merged and blanks removed.

    Args:
        min_prob: frames whose best probability is below this are treated as blank.
        blank_id: the CTC blank token.
    """

    def __init__(self, *, min_prob: float = 0.0, blank_id: int = 0) -> None:
        self.min_prob = min_prob
        self.blank_id = blank_id

    def __call__(self, model: ASRModel, encoder_out: Tensor, encoder_lens: Tensor) -> list[list[int]]:
        """Args: encoder_out (B, T, D), encoder_lens (B,). Returns token ids per utterance."""
        log_probs = model.find_ctc_head("decode method $component")(encoder_out)  # (B, T, V)
        best_log_prob, best = log_probs.max(dim=-1)  # (B, T)
        best = best.masked_fill(best_log_prob.exp() < self.min_prob, self.blank_id)
        hyps = []
        for path in (best[i, : int(n)].tolist() for i, n in enumerate(encoder_lens)):
            tokens = [t for j, t in enumerate(path) if t != self.blank_id and (j == 0 or t != path[j - 1])]
            hyps.append(tokens)
        return hyps
'''

COMPONENTS = {"ffn": FFN, "attention": ATTENTION, "loss": LOSS, "search": SEARCH}

#: The YAML that uses the component, for the README.
CONFIG_SNIPPETS = {
    "ffn": "encoder:\n  ffn: {type: $component, hidden: 256}",
    "attention": "encoder:\n  pos_enc: abs\n  attention: {type: $component, dropout: 0.1}",
    "loss": "losses:\n  - {type: $component, weight: 1.0, smoothing: 0.1}",
    "search": "decode:\n  methods: [$component]\n  options:\n    $component: {min_prob: 0.2}",
}

_TEST_HEADER = '''
"""Builds a tiny model with ``$component`` through speechforge's registry (the installed
package's entry point) and checks it against the $kind contract."""
from __future__ import annotations

import torch

from speechforge.builder import build_model
from speechforge.plugins import create_host

CONFIG = {
    "vocab_size": 12,
    "frontend": {"type": "fbank", "num_mel_bins": 20},
    "encoder": {
        "type": "conformer", "d_model": 16, "heads": 2, "num_blocks": 1,
        "ffn": {"type": "dense", "hidden": 32}, "encoder_block": {"type": "conformer", "conv_kernel": 3},
    },
    "losses": [{"type": "ctc", "weight": 1.0}],
}
BATCH = {
    "speech": torch.randn(2, 4000),
    "speech_lens": torch.tensor([4000, 3000]),
    "targets": torch.tensor([[1, 2, 3], [4, 5, -1]]),
    "target_lens": torch.tensor([3, 2]),
}


def test_the_plugin_loads_and_registers_$component():
    host = create_host()
    assert not [f.describe() for f in host.failed if f.name == "$package"]
    assert host.plugin("$package").components == {"$kind": ["$component"]}
'''

_TRAINS = '''

def test_a_model_with_${component}_trains_one_step():
    torch.manual_seed(0)
    model = build_model(CONFIG, create_host())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    first = model(BATCH)["loss"]
    assert torch.isfinite(first)
    first.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    optimizer.step()
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(BATCH)["loss"])
'''

TESTS = {
    "ffn": _TEST_HEADER + '''

CONFIG["encoder"]["ffn"] = {"type": "$component", "hidden": 24}
''' + _TRAINS + '''

def test_${component}_keeps_the_shape_and_is_position_wise():
    model = build_model(CONFIG, create_host()).eval()
    ffn = model.encoder.blocks[0].feed_forward
    x = torch.randn(2, 7, 16)
    out = ffn(x)
    assert out.shape == x.shape
    torch.testing.assert_close(ffn(x[:, 3:4]), out[:, 3:4])  # each frame on its own
''',
    "attention": _TEST_HEADER + '''

CONFIG["encoder"].update(pos_enc="abs", attention={"type": "$component"})
''' + _TRAINS + '''

def test_${component}_ignores_masked_keys():
    model = build_model(CONFIG, create_host()).eval()
    attention = model.encoder.blocks[0].self_attn
    x = torch.randn(1, 6, 16)
    mask = torch.tensor([[[True, True, True, True, False, False]]])
    out, cache = attention(x, x, x, mask)
    changed = torch.cat([x[:, :4], torch.randn(1, 2, 16)], dim=1)
    torch.testing.assert_close(attention(changed, changed, changed, mask)[0][:, :4], out[:, :4])
    assert cache is None
''',
    "loss": _TEST_HEADER + '''

CONFIG["losses"] = [{"type": "$component", "weight": 1.0}]
''' + _TRAINS + '''

def test_${component}_without_smoothing_is_core_ctc():
    torch.manual_seed(0)
    ours = build_model({**CONFIG, "losses": [{"type": "$component", "weight": 1.0, "smoothing": 0.0}]}, create_host())
    torch.manual_seed(0)
    core = build_model({**CONFIG, "losses": [{"type": "ctc", "weight": 1.0}]}, create_host())
    core.load_state_dict(ours.state_dict())
    ours.eval(), core.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(BATCH)["loss"], core(BATCH)["loss"])
''',
    "search": _TEST_HEADER + '''

def test_${component}_at_zero_threshold_is_greedy_ctc():
    host = create_host()
    model = build_model(CONFIG, host).eval()
    with torch.no_grad():
        encoder_out, encoder_lens = model.encode(BATCH["speech"], BATCH["speech_lens"])
        ours = host.registry.build("search", {"type": "$component", "min_prob": 0.0}, "decode")
        greedy = host.registry.build("search", "ctc_greedy_search", "decode")
        assert ours(model, encoder_out, encoder_lens) == greedy(model, encoder_out, encoder_lens)
        silent = host.registry.build("search", {"type": "$component", "min_prob": 1.01}, "decode")
        assert silent(model, encoder_out, encoder_lens) == [[], []]
''',
}
