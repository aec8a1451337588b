"""Names and references: ``credit-risk`` names a model, ``credit-risk:3`` one of its versions."""

from __future__ import annotations

import re

from ..errors import InvalidInput

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # fullmatch: no trailing newline
#: The same rule for JSON Schema / OpenAPI validators, whose ``$`` is the end of the text.
NAME_PATTERN = f"^{_NAME.pattern}$"


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid name for a ``kind`` (model, dataset, user, deployment)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid {kind} name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def parse_ref(ref: str, kind: str = "model") -> tuple[str, int]:
    """Split ``NAME:VERSION`` into (name, version); InvalidInput if malformed."""
    if isinstance(ref, str) and ref.count(":") == 1:
        name, _, version = ref.partition(":")
        if _NAME.fullmatch(name) and version.isascii() and version.isdigit() and int(version) >= 1:
            return name, int(version)
    raise InvalidInput(
        f"malformed {kind} reference {ref!r}: expected NAME:VERSION, e.g. credit-risk:3"
    )


def format_ref(name: str, version: int) -> str:
    return f"{name}:{version}"
