"""icefall's warm-up of the simple and pruned loss weights."""
from __future__ import annotations

import pytest

from speechforge_plugins.rnnt.loss_warmup import transducer_loss_weights, warmup_fraction


def test_weights_move_linearly_from_start_to_end() -> None:
    assert transducer_loss_weights(0.0, 0.5) == pytest.approx((1.0, 0.1))
    assert transducer_loss_weights(0.5, 0.5) == pytest.approx((0.75, 0.55))
    assert transducer_loss_weights(1.0, 0.5) == pytest.approx((0.5, 1.0))
    assert transducer_loss_weights(3.0, 0.2) == transducer_loss_weights(1.0, 0.2) == pytest.approx((0.2, 1.0))


def test_fraction_from_steps() -> None:
    assert warmup_fraction(500, 2000) == 0.25
    assert warmup_fraction(5000, 2000) == 1.0
    with pytest.raises(ValueError, match="warm_step must be positive, got 0"):
        warmup_fraction(1, 0)
    with pytest.raises(ValueError, match=r"simple_loss_scale must be in \[0, 1\], got 1.5"):
        transducer_loss_weights(0.1, 1.5)
