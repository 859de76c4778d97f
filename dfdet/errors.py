"""User-facing errors. The CLI and the app print these as one message, never as a traceback."""


class DfdetError(Exception):
    """An error whose message tells the user what went wrong and what to do."""


class WeightsUnavailable(DfdetError):
    """CLIP weights are neither on disk nor downloadable."""


class CheckpointError(DfdetError):
    """A checkpoint is missing, unsafe, or for another backbone or method."""


class DataError(DfdetError):
    """A manifest, image, video or description file cannot be used."""


class ConfigError(DfdetError, ValueError):
    """A config file or --set override that cannot be used (unknown key, bad value, bad YAML)."""
