"""speechforge: a plugin-based speech recognition toolkit."""
from speechforge.builder import build_model
from speechforge.decode.recognizer import Recognizer, load
from speechforge.hookspecs import hookimpl
from speechforge.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    PluginError,
    RegistryError,
    SpeechforgeError,
)

build = build_model

__all__ = [
    "build",
    "build_model",
    "hookimpl",
    "load",
    "Recognizer",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "PluginError",
    "RegistryError",
    "SpeechforgeError",
]
__version__ = "0.1.0"
