"""The serving gateway: one ASGI app over a Workspace acting as the platform.

``create_app(workspace)`` builds it; ``nexml server`` runs it on uvicorn. Routes are called with
their route key; every answered row is a committed record in its deployment's decision chain.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
