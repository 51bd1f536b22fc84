"""``data.subset``: a reproducible random part of a training set, for low-resource fine-tuning."""
from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from speechforge.data.data_dir import Utterance
from speechforge.errors import ConfigError
from speechforge.train.options import SubsetOptions

log = logging.getLogger(__name__)


def check_subset(options: SubsetOptions) -> None:
    """Exactly one of fraction, utterances, hours, each in its range."""
    given = [name for name in ("fraction", "utterances", "hours") if getattr(options, name)]
    if len(given) != 1:
        raise ConfigError(f"data.subset: give exactly one of fraction, utterances, hours; got {', '.join(given) or 'none'}")
    if given == ["fraction"] and not 0 < options.fraction <= 1:
        raise ConfigError(f"data.subset.fraction: must be in (0, 1], got {options.fraction}")
    if options.utterances < 0:
        raise ConfigError(f"data.subset.utterances: must be positive, got {options.utterances}")
    if options.hours < 0:
        raise ConfigError(f"data.subset.hours: must be positive, got {options.hours}")


def take_subset(utterances: Sequence[Utterance], options: SubsetOptions) -> list[Utterance]:
    """The utterances ``options`` keeps, in their original order.

    The draw depends only on the utterance ids and ``options.seed`` (ids are sorted, then
    shuffled by a generator of that seed), so every rank and every resume keeps the same ones.
    """
    check_subset(options)
    order = sorted(range(len(utterances)), key=lambda i: utterances[i].utt_id)
    random.Random(options.seed).shuffle(order)
    total_hours = sum(u.duration for u in utterances) / 3600
    if options.fraction:
        chosen = order[: max(1, round(options.fraction * len(order)))]
    elif options.utterances:
        if options.utterances > len(order):
            raise ConfigError(f"data.subset.utterances: {options.utterances} asked, the training set has {len(order)}")
        chosen = order[: options.utterances]
    else:
        if options.hours > total_hours:
            raise ConfigError(f"data.subset.hours: {options.hours} h asked, the training set has {total_hours:.3f} h")
        chosen, seconds = [], 0.0
        for i in order:
            if seconds >= options.hours * 3600:
                break
            chosen.append(i)
            seconds += utterances[i].duration
    kept = [utterances[i] for i in sorted(chosen)]
    log.info(
        "data.subset: kept %d of %d utterances (%.3f of %.3f h)",
        len(kept), len(utterances), sum(u.duration for u in kept) / 3600, total_hours,
    )
    return kept
