"""Errors the harness raises on purpose: each message says what failed, what was tried, and the fix."""

from __future__ import annotations


class JobchaosError(Exception):
    """Base class: an error whose message is meant for a person, shown without a traceback wall."""


class BinaryNotFoundError(JobchaosError):
    """A server binary was found in none of the places looked at."""


class ServiceStartError(JobchaosError):
    """A server did not become ready; the message carries the tail of its log."""


class PortInUseError(ServiceStartError):
    """An explicitly requested port is taken by another process."""


class ExternalServiceError(JobchaosError):
    """A server someone else runs (external mode) did not answer in time."""
