"""Errors the harness raises on purpose: each message says what failed, what was tried, and the fix."""

from __future__ import annotations


class JobchaosError(Exception):
    """Base class: an error whose message is meant for a person, shown without a traceback wall."""


class SessionError(JobchaosError):
    """A mistake in the session's setup (a setting, a binary, a server, a directory) that every
    later test would repeat: the plugin reports it once and stops the session."""


class BinaryNotFoundError(SessionError):
    """A server binary was found in none of the places looked at."""


class ServiceStartError(JobchaosError):
    """A server did not become ready; the message carries the tail of its log."""


class PortInUseError(ServiceStartError):
    """An explicitly requested port is taken by another process."""


class ExternalServiceError(SessionError):
    """A server someone else runs (external mode) did not answer in time, or refused."""


class ArtifactsDirError(SessionError):
    """The artifacts directory cannot be created or written (read-only, full, not a directory)."""


class WorkerCommandError(SessionError):
    """The worker (or probe) command cannot run at all: not found, not executable, or every
    worker of the session's first pool exited right after it started."""


class FaultProxyError(SessionError):
    """The fault proxy (embedded or the Toxiproxy server given) cannot be used."""


class DispatcherError(SessionError):
    """The dispatcher setting names nothing the harness can call (a module that does not
    import, a missing attribute, not a callable)."""
