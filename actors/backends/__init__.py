"""Render backends, looked up by name. See :mod:`actors.backends.base` for the contract."""

from __future__ import annotations

from importlib.metadata import entry_points

from .base import Backend, Issue, Renderer, Resources

__all__ = [
    "Backend",
    "Issue",
    "Renderer",
    "Resources",
    "UnknownBackend",
    "available_backends",
    "get_backend",
    "register_backend",
]

_registered: dict[str, Backend] = {}


class UnknownBackend(LookupError):
    pass


def register_backend(backend: Backend) -> None:
    """Register a backend instance programmatically (pipelines, tests)."""
    _registered[backend.name] = backend


def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group="reelfarm.backends")}


def available_backends() -> list[str]:
    return sorted(set(_registered) | set(_entry_points()) | {"previz", "diffusers"})


def get_backend(name: str) -> Backend:
    if name in _registered:
        return _registered[name]
    eps = _entry_points()
    if name in eps:
        backend = eps[name].load()()  # type: ignore[attr-defined]
    elif name == "previz":  # built in, also when the package is used from a source tree
        from .previz import PrevizBackend

        backend = PrevizBackend()
    elif name == "diffusers":
        from .diffusion import DiffusersBackend

        backend = DiffusersBackend()
    else:
        raise UnknownBackend(
            f"unknown backend {name!r}; available: {', '.join(available_backends())}"
        )
    _registered[name] = backend
    return backend
