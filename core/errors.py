"""Exceptions with messages that name the offending file, key or value."""


class SpeechforgeError(Exception):
    """Base of every error speechforge raises on purpose."""


class RegistryError(SpeechforgeError):
    """Unknown or duplicate component names, wrong base classes."""


class ConfigError(SpeechforgeError):
    """A config key or value is wrong; the message starts with its dotted path."""


class PluginError(SpeechforgeError):
    """A plugin could not be loaded or broke the plugin contract."""


class DataError(SpeechforgeError):
    """Unreadable or inconsistent data (audio, transcripts, data dirs)."""


class CheckpointError(SpeechforgeError):
    """A checkpoint file is missing, corrupted or does not fit the model."""


class RankFailure(SpeechforgeError):
    """Another rank of a distributed run failed, died or stopped answering; names it."""
