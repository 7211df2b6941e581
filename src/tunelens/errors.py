"""User-facing errors. The CLI prints these as one clear message, never a traceback."""


class TunelensError(Exception):
    """An error caused by the user's input (file, config, model path...), with a clear message."""


class ConfigError(TunelensError):
    """A config file or option is invalid; the message names the bad field."""
