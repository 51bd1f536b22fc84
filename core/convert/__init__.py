"""Converters from other toolkits' checkpoints to speechforge state dicts."""
from speechforge.convert.espnet_conformer import convert_espnet_conformer

__all__ = ["convert_espnet_conformer"]
