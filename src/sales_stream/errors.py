"""Exceptions that carry one-line, actionable messages for users."""


class SalesStreamError(Exception):
    """Base class: the CLI prints ``str(exc)`` as a single line, without a traceback."""


class ConfigError(SalesStreamError):
    """A setting is missing or invalid; the message names the environment variable."""


class InfraError(SalesStreamError):
    """A service could not be started, reached or stopped."""
