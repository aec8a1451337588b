"""Content-addressed, hash-verified artifact store over fsspec.

An artifact is a directory whose top-level ``MODEL.json`` (the manifest) lists the SHA-256 and
size of every other file. The registry keeps the SHA-256 of the manifest's bytes, so one hash pins
the whole tree: reading an artifact back checks the manifest against the registry and every file
against the manifest, and refuses on any changed, added or removed file. Stored objects are
immutable.

The store talks to its root only through an fsspec filesystem, so a local folder, ``memory://`` and
``s3://`` behave alike; only the caller's own source and destination directories use ``os``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fsspec.core import url_to_fs

from nexml_ext.errors import IntegrityError, InvalidInput, NotFound

MANIFEST_NAME = "MODEL.json"
MANIFEST_FORMAT = "nexml-artifact/1"

_CHUNK = 1024 * 1024
# Writes land here first and are moved under their key only when complete. Keys cannot start with
# "." (see _SEGMENT), so no key can collide with this area.
_STAGING = ".nexml-staging"
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+=@-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RESERVED_KEYS = ("format", "files")


@dataclass(frozen=True)
class StoredArtifact:
    """An artifact as registered: where it is and the SHA-256 of its manifest's bytes."""

    uri: str
    sha256: str
    manifest: dict


def sha256_file(path: str | Path) -> str:
    """Return the hex SHA-256 of a local file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_bytes(manifest: dict) -> bytes:
    """Return the canonical bytes of a manifest (the bytes that are stored and hashed)."""
    text = json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False)
    return text.encode("utf-8") + b"\n"


def manifest_for_directory(local_dir: str | Path, metadata: dict | None = None) -> dict:
    """Build the manifest of a local artifact directory without storing anything.

    Args:
        local_dir: the directory. A top-level ``MODEL.json`` in it is not listed as a file; its keys
            other than ``format``/``files`` are kept as metadata.
        metadata: extra manifest keys; they override those of an existing ``MODEL.json``.

    Returns:
        ``{"format": MANIFEST_FORMAT, "files": {relpath: {"sha256", "size"}}, **metadata}``.

    Raises:
        InvalidInput: the directory is missing or has no files, a symlink leaves it (or links a
            directory), a file is not a regular file, or the metadata is not a JSON object.
    """
    root = _source_root(local_dir)
    files = {}
    for rel, path in _source_files(root):
        files[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return _assemble(root, files, metadata)


class ArtifactStore:
    """Immutable, hash-verified storage of artifact directories and single objects."""

    def __init__(self, root: str) -> None:
        """Open the store at ``root``: a local path or any fsspec URL (``memory://x``, ``s3://b/p``)."""
        if not isinstance(root, str) or not root.strip():
            raise InvalidInput("artifact root must be a non-empty path or URL")
        self._fs, path = url_to_fs(root)
        self._base = path.rstrip("/")
        if _is_local(self._fs):
            self._root = path
        else:
            self._root = root if root.endswith("://") else root.rstrip("/")

    @property
    def root(self) -> str:
        """The root as URIs are built from it: an absolute path for a local folder, else the URL."""
        return self._root

    # ---- writing -------------------------------------------------------------------------------

    def put_directory(
        self, local_dir: str | Path, key: str, metadata: dict | None = None
    ) -> StoredArtifact:
        """Store a local artifact directory under ``key`` with a fresh manifest.

        Every file is hashed as it is copied, so the manifest describes exactly the stored bytes.
        The tree is written to a staging area and moved under ``key`` only when complete; on
        failure nothing is left at ``key``.

        Args:
            local_dir: the source directory (see ``manifest_for_directory`` for what it may hold).
            key: slash-separated destination, e.g. ``"models/credit-risk/3"``.
            metadata: extra manifest keys, overriding those of the source's own ``MODEL.json``.

        Returns:
            The stored artifact: its URI, the SHA-256 of its manifest bytes (what the registry
            keeps) and the manifest.

        Raises:
            InvalidInput: bad key, bad source directory or metadata, or something already at ``key``
                (artifacts are immutable) or an object above it.
        """
        key = _check_key(key)
        source = _source_root(local_dir)
        sources = _source_files(source)
        _assemble(source, {}, metadata)  # refuse bad metadata before copying anything
        target = self._path(key)
        self._refuse_occupied(key)

        staging = self._staging_path()
        try:
            files = {}
            made: set[str] = set()
            for rel, path in sources:
                dest = f"{staging}/{rel}"
                parent = dest.rsplit("/", 1)[0]
                if parent not in made:
                    self._fs.makedirs(parent, exist_ok=True)
                    made.add(parent)
                with open(path, "rb") as src, self._fs.open(dest, "wb") as out:
                    files[rel] = _copy_hashing(src, out)
            manifest = _assemble(source, files, metadata)
            data = manifest_bytes(manifest)
            with self._fs.open(f"{staging}/{MANIFEST_NAME}", "wb") as out:
                out.write(data)
            self._publish(staging, key, target)
        finally:
            self._discard(staging)
        return StoredArtifact(uri=self._uri(key), sha256=_sha256(data), manifest=manifest)

    def put_bytes(self, data: bytes, key: str) -> tuple[str, str]:
        """Store one immutable object (a report, a dataset snapshot) under ``key``.

        Returns:
            ``(uri, sha256)`` of the stored bytes.

        Raises:
            InvalidInput: ``data`` is not bytes, the key is bad, or something is already at ``key``.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInput(f"put_bytes needs bytes, got {type(data).__name__}")
        data = bytes(data)
        key = _check_key(key)
        target = self._path(key)
        self._refuse_occupied(key)
        staging = self._staging_path()
        try:
            self._fs.makedirs(staging, exist_ok=True)
            with self._fs.open(f"{staging}/object", "wb") as out:
                out.write(data)
            self._publish(f"{staging}/object", key, target)
        finally:
            self._discard(staging)
        return self._uri(key), _sha256(data)

    # ---- reading -------------------------------------------------------------------------------

    def exists(self, uri: str) -> bool:
        """Return whether anything is stored at ``uri``.

        Raises:
            InvalidInput: ``uri`` is not under this store's root.
        """
        return self._fs.exists(self._resolve(uri))

    def verify(self, uri: str, expected_sha256: str) -> dict:
        """Check a stored artifact in place against the registry's manifest hash.

        Returns:
            The manifest.

        Raises:
            NotFound: nothing is stored at ``uri``.
            InvalidInput: ``uri`` is not under this store's root or the hash is not 64 hex digits.
            IntegrityError: the manifest's hash differs from ``expected_sha256``, or a file is
                changed, missing or not in the manifest; the message names each problem.
        """
        path, expected = self._open_artifact(uri, expected_sha256)
        manifest = self._checked_manifest(uri, path, expected)
        present = self._listing(path)
        problems = _listing_problems(manifest, present)
        for rel, entry in manifest["files"].items():
            if rel not in present:
                continue
            try:
                with self._fs.open(f"{path}/{rel}", "rb") as src:
                    actual = _copy_hashing(src, None)
            except FileNotFoundError:
                problems.append(f"file {rel!r} listed in manifest is missing")
                continue
            problems.extend(_file_problems(rel, entry, actual))
        _raise_if(uri, problems)
        return manifest

    def fetch(self, uri: str, expected_sha256: str, dest: str | Path | None = None) -> Path:
        """Copy a stored artifact into a new private local directory, verifying the copied bytes.

        Every file is hashed while it is written locally, so what was verified is exactly what the
        caller will load; nothing stored can change underneath the check.

        Args:
            uri: the artifact's URI.
            expected_sha256: the manifest hash recorded in the registry.
            dest: a local directory to create (it must not exist); default ``tempfile.mkdtemp()``.

        Returns:
            The local directory (mode 0700), holding the files and ``MODEL.json``.

        Raises:
            NotFound: nothing is stored at ``uri``.
            InvalidInput: bad ``uri``/hash, or ``dest`` already exists.
            IntegrityError: as for ``verify``; the partial copy is deleted first.
        """
        path, expected = self._open_artifact(uri, expected_sha256)
        local = _private_dir(dest)
        try:
            data = self._read(f"{path}/{MANIFEST_NAME}", uri)
            manifest = _parse_manifest(uri, data, expected)
            (local / MANIFEST_NAME).write_bytes(data)
            present = self._listing(path)
            problems = _listing_problems(manifest, present)
            for rel, entry in manifest["files"].items():
                if rel not in present:
                    continue
                out_path = local / rel
                out_path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with self._fs.open(f"{path}/{rel}", "rb") as src, open(out_path, "xb") as out:
                        actual = _copy_hashing(src, out)
                except FileNotFoundError:
                    problems.append(f"file {rel!r} listed in manifest is missing")
                    continue
                problems.extend(_file_problems(rel, entry, actual))
            _raise_if(uri, problems)
        except BaseException:
            shutil.rmtree(local, ignore_errors=True)
            raise
        return local

    def get_bytes(self, uri: str, expected_sha256: str) -> bytes:
        """Read one stored object and check it against its recorded SHA-256.

        Raises:
            NotFound: nothing is stored at ``uri``.
            InvalidInput: bad ``uri`` or hash, or ``uri`` is a directory.
            IntegrityError: the bytes' SHA-256 differs from ``expected_sha256``.
        """
        expected = _check_sha256(expected_sha256)
        path = self._resolve(uri)
        if not self._fs.exists(path):
            raise NotFound(f"nothing stored at {uri}")
        if not self._fs.isfile(path):
            raise InvalidInput(f"{uri} is a directory, not a stored object")
        data = self._read(path, uri)
        actual = _sha256(data)
        if actual != expected:
            raise IntegrityError(f"object {uri}: sha256 is {actual}, registry expects {expected}")
        return data

    # ---- internals -----------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return f"{self._base}/{key}"

    def _uri(self, key: str) -> str:
        return self._root + ("" if self._root.endswith("/") else "/") + key

    def _resolve(self, uri: str) -> str:
        """Map a URI (any spelling fsspec accepts for this filesystem) to a path under the root."""
        if not isinstance(uri, str):
            raise InvalidInput(f"artifact URI must be a string, got {type(uri).__name__}")
        path = self._fs._strip_protocol(uri).rstrip("/")
        prefix = self._base + "/"
        if not path.startswith(prefix):
            raise InvalidInput(f"{uri} is not under the artifact root {self._root}")
        try:
            return self._path(_check_key(path[len(prefix) :]))
        except InvalidInput:
            raise InvalidInput(f"{uri} is not a valid artifact URI under {self._root}") from None

    def _refuse_occupied(self, key: str) -> None:
        if self._fs.exists(self._path(key)):
            raise InvalidInput(f"{self._uri(key)} already exists; stored artifacts are immutable")
        parts = key.split("/")
        for depth in range(1, len(parts)):
            above = self._path("/".join(parts[:depth]))
            if self._fs.isfile(above) or self._fs.exists(f"{above}/{MANIFEST_NAME}"):
                raise InvalidInput(
                    f"{self._uri(key)} would be inside the stored object "
                    f"{self._uri('/'.join(parts[:depth]))}"
                )

    def _staging_path(self) -> str:
        return f"{self._base}/{_STAGING}/{uuid.uuid4().hex}"

    def _publish(self, staged: str, key: str, target: str) -> None:
        # Re-check just before the move: a local move onto an existing directory nests inside it.
        self._refuse_occupied(key)
        self._fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        try:
            self._fs.mv(staged, target, recursive=True)
        except BaseException:
            # On object stores a move is copy-then-delete; drop any half-copied target.
            self._discard(target)
            raise

    def _discard(self, path: str) -> None:
        try:
            if self._fs.exists(path):
                self._fs.rm(path, recursive=True)
        except OSError:
            pass

    def _open_artifact(self, uri: str, expected_sha256: str) -> tuple[str, str]:
        expected = _check_sha256(expected_sha256)
        path = self._resolve(uri)
        self._fs.invalidate_cache(path)
        if not self._fs.exists(path):
            raise NotFound(f"no artifact at {uri}")
        if not self._fs.isdir(path):
            raise IntegrityError(f"artifact {uri}: is a single object, not an artifact directory")
        return path, expected

    def _checked_manifest(self, uri: str, path: str, expected: str) -> dict:
        return _parse_manifest(uri, self._read(f"{path}/{MANIFEST_NAME}", uri), expected)

    def _read(self, path: str, uri: str) -> bytes:
        try:
            with self._fs.open(path, "rb") as src:
                return src.read()
        except FileNotFoundError:
            name = path.rsplit("/", 1)[-1]
            raise IntegrityError(f"artifact {uri}: {name} is missing") from None

    def _listing(self, path: str) -> set[str]:
        prefix = path + "/"
        found = set()
        for item in self._fs.find(path, withdirs=False):
            item = self._fs._strip_protocol(item)
            if item.startswith(prefix):
                found.add(item[len(prefix) :])
        return found


# ---- module helpers ------------------------------------------------------------------------------


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_sha256(value: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value.lower()):
        raise InvalidInput(f"expected a SHA-256 as 64 hex digits, got {value!r}")
    return value.lower()


def _check_key(key: str) -> str:
    """Return ``key`` if every segment is a plain name; refuse '..', absolute and empty segments."""
    if not isinstance(key, str) or not key:
        raise InvalidInput("artifact key must be a non-empty string")
    segments = key.split("/")
    for segment in segments:
        if not _SEGMENT.fullmatch(segment):
            raise InvalidInput(
                f"artifact key {key!r} is invalid: segment {segment!r} must match "
                f"{_SEGMENT.pattern} (no '..', no leading '/', no empty segments)"
            )
    return key


def _copy_hashing(src: IO[bytes], out: IO[bytes] | None) -> dict:
    """Stream ``src`` into ``out`` (if given) and return the SHA-256 and size of the bytes moved."""
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if out is not None:
            out.write(chunk)
    return {"sha256": digest.hexdigest(), "size": size}


def _source_root(local_dir: str | Path) -> Path:
    root = Path(local_dir)
    if not root.is_dir():
        raise InvalidInput(f"artifact directory {root} does not exist or is not a directory")
    return root.resolve()


def _source_files(root: Path) -> list[tuple[str, Path]]:
    """List ``(relpath_posix, path)`` of every file under ``root`` but the top-level manifest."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in dirnames:
            if (here / name).is_symlink():
                raise InvalidInput(f"{here / name} is a symlinked directory; copy it in instead")
        for name in filenames:
            path = here / name
            rel = path.relative_to(root).as_posix()
            if rel == MANIFEST_NAME:
                continue
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root):
                    raise InvalidInput(f"{path} is a symlink pointing outside {root}")
            try:
                mode = path.stat().st_mode
            except OSError:
                raise InvalidInput(f"{path} is a broken symlink") from None
            if not stat.S_ISREG(mode):
                raise InvalidInput(f"{path} is not a regular file")
            found.append((rel, path))
    if not found:
        raise InvalidInput(f"artifact directory {root} holds no files")
    return sorted(found)


def _assemble(root: Path, files: dict, metadata: dict | None) -> dict:
    merged: dict = {}
    existing = root / MANIFEST_NAME
    if existing.is_symlink() and not existing.resolve().is_relative_to(root):
        raise InvalidInput(f"{existing} is a symlink pointing outside {root}")
    if existing.is_file():
        try:
            previous = json.loads(existing.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"{existing} is not valid JSON: {exc}") from None
        if not isinstance(previous, dict):
            raise InvalidInput(f"{existing} must hold a JSON object")
        merged.update({k: v for k, v in previous.items() if k not in _RESERVED_KEYS})
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InvalidInput(f"manifest metadata must be a dict, got {type(metadata).__name__}")
        reserved = [k for k in _RESERVED_KEYS if k in metadata]
        if reserved:
            raise InvalidInput(f"manifest metadata may not set {', '.join(reserved)}")
        merged.update(metadata)
    manifest = {"format": MANIFEST_FORMAT, "files": files, **merged}
    try:
        manifest_bytes(manifest)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"manifest metadata is not JSON-serialisable: {exc}") from None
    return manifest


def _parse_manifest(uri: str, data: bytes, expected: str) -> dict:
    actual = _sha256(data)
    if actual != expected:
        raise IntegrityError(
            f"artifact {uri}: manifest hash is {actual}, registry expects {expected}"
        )
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise IntegrityError(f"artifact {uri}: manifest is not valid JSON") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise IntegrityError(f"artifact {uri}: manifest format is not {MANIFEST_FORMAT}")
    if not isinstance(files, dict):
        raise IntegrityError(f"artifact {uri}: manifest has no files table")
    for rel, entry in files.items():
        if not _safe_relpath(rel) or not isinstance(entry, dict):
            raise IntegrityError(f"artifact {uri}: manifest entry {rel!r} is malformed")
    return manifest


def _safe_relpath(rel: Any) -> bool:
    if not isinstance(rel, str) or not rel or rel == MANIFEST_NAME:
        return False
    return all(part not in ("", ".", "..") and "\\" not in part for part in rel.split("/"))


def _listing_problems(manifest: dict, present: set[str]) -> list[str]:
    listed = set(manifest["files"])
    problems = [f"file {rel!r} listed in manifest is missing" for rel in sorted(listed - present)]
    extra = present - listed - {MANIFEST_NAME}
    problems += [f"unexpected file {rel!r} not in manifest" for rel in sorted(extra)]
    return problems


def _file_problems(rel: str, entry: dict, actual: dict) -> list[str]:
    if actual["sha256"] != entry.get("sha256"):
        return [f"file {rel!r} changed (sha256 {actual['sha256']} != {entry.get('sha256')})"]
    if actual["size"] != entry.get("size"):
        return [f"file {rel!r} size is {actual['size']}, manifest says {entry.get('size')}"]
    return []


def _raise_if(uri: str, problems: list[str]) -> None:
    if problems:
        raise IntegrityError(f"artifact {uri}: " + "; ".join(problems))


def _private_dir(dest: str | Path | None) -> Path:
    if dest is None:
        return Path(tempfile.mkdtemp(prefix="nexml-artifact-"))
    local = Path(dest)
    if local.exists() or local.is_symlink():
        raise InvalidInput(f"fetch destination {local} already exists; give a new path")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.mkdir(mode=0o700)
    local.chmod(0o700)
    return local
