"""The artifact store: round trips, every kind of tampering, immutability and key validation."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
import uuid
from pathlib import Path

import pytest
from fsspec.core import url_to_fs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexml_ext.errors import IntegrityError, InvalidInput, NotFound
from nexml_ext.store import artifacts
from nexml_ext.store.artifacts import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    ArtifactStore,
    StoredArtifact,
    manifest_bytes,
    manifest_for_directory,
    sha256_file,
)

FILES = {
    "model.pkl": b"\x80\x04pickled-model-bytes",
    "a.txt": b"alpha\n",
    "sub/b.bin": bytes(range(256)) * 9,
    "sub/deeper/c.json": b'{"c": 1}',
    "sub/MODEL.json": b"a nested MODEL.json is an ordinary file",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def write_at(uri: str, data: bytes) -> None:
    """Write behind the store's back, the way an attacker or a bad disk would."""
    fs, path = url_to_fs(uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as out:
        out.write(data)


def read_at(uri: str) -> bytes:
    fs, path = url_to_fs(uri)
    with fs.open(path, "rb") as src:
        return src.read()


def remove_at(uri: str) -> None:
    fs, path = url_to_fs(uri)
    fs.rm(path, recursive=True)


def memory_root() -> str:
    return f"memory://nexml-test-{uuid.uuid4().hex}"


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    if request.param == "local":
        yield ArtifactStore(str(tmp_path / "artifacts"))
        return
    root = memory_root()
    yield ArtifactStore(root)
    fs, path = url_to_fs(root)
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.fixture
def source(tmp_path) -> Path:
    return make_tree(tmp_path / "src", FILES)


@pytest.fixture
def stored(store, source) -> StoredArtifact:
    return store.put_directory(source, "models/credit-risk/3", {"flavour": "sklearn"})


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Point tempfile at an empty folder so a test can see what fetch leaves behind."""
    folder = tmp_path / "private-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# ---- manifests -----------------------------------------------------------------------------------


def test_manifest_lists_every_file_with_hash_and_size(source):
    manifest = manifest_for_directory(source, {"target": "default"})
    assert manifest["format"] == MANIFEST_FORMAT
    assert manifest["target"] == "default"
    assert manifest["files"] == {
        rel: {"sha256": sha(data), "size": len(data)} for rel, data in FILES.items()
    }
    assert "sub/MODEL.json" in manifest["files"]


def test_manifest_merges_metadata_from_existing_model_json(source):
    existing = {"format": "old", "files": {"x": 1}, "flavour": "autogluon", "target": "y"}
    (source / MANIFEST_NAME).write_text(json.dumps(existing))
    manifest = manifest_for_directory(source, {"target": "default", "classes": [0, 1]})
    assert manifest["format"] == MANIFEST_FORMAT
    assert MANIFEST_NAME not in manifest["files"]
    assert set(manifest["files"]) == set(FILES)
    assert manifest["flavour"] == "autogluon"
    assert manifest["target"] == "default"
    assert manifest["classes"] == [0, 1]


def test_manifest_bytes_are_canonical():
    a = manifest_bytes({"b": 1, "a": "é", "files": {}})
    b = manifest_bytes({"files": {}, "a": "é", "b": 1})
    assert a == b
    assert a.endswith(b"\n")
    assert "é".encode() in a
    assert json.loads(a) == {"a": "é", "b": 1, "files": {}}


def test_sha256_file_streams_large_files(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256_file(path) == sha(data)


def test_manifest_refuses_missing_and_empty_directories(tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        manifest_for_directory(tmp_path / "nope")
    empty = tmp_path / "empty"
    (empty / "only-dirs").mkdir(parents=True)
    with pytest.raises(InvalidInput, match="holds no files"):
        manifest_for_directory(empty)
    (empty / MANIFEST_NAME).write_text("{}")
    with pytest.raises(InvalidInput, match="holds no files"):
        manifest_for_directory(empty)


def test_manifest_refuses_symlink_outside_the_directory(source, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("not part of the model")
    (source / "sub" / "link.txt").symlink_to(outside)
    with pytest.raises(InvalidInput, match="pointing outside"):
        manifest_for_directory(source)


def test_manifest_follows_symlink_inside_the_directory(source):
    (source / "alias.txt").symlink_to(source / "a.txt")
    manifest = manifest_for_directory(source)
    assert manifest["files"]["alias.txt"]["sha256"] == sha(FILES["a.txt"])


def test_manifest_refuses_symlinked_directory(source):
    (source / "linked").symlink_to(source / "sub", target_is_directory=True)
    with pytest.raises(InvalidInput, match="symlinked directory"):
        manifest_for_directory(source)


@pytest.mark.parametrize("metadata", [{"files": {}}, {"format": "x"}, {"when": object()}, ["x"]])
def test_manifest_refuses_bad_metadata(source, metadata):
    with pytest.raises(InvalidInput):
        manifest_for_directory(source, metadata)


def test_manifest_refuses_invalid_existing_model_json(source):
    (source / MANIFEST_NAME).write_text("[1, 2]")
    with pytest.raises(InvalidInput, match="JSON object"):
        manifest_for_directory(source)
    (source / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        manifest_for_directory(source)


# ---- round trip ----------------------------------------------------------------------------------


def test_put_verify_fetch_round_trip(store, source, stored, private_tmp):
    assert stored.uri == store.root + "/models/credit-risk/3"
    assert stored.manifest == manifest_for_directory(source, {"flavour": "sklearn"})
    stored_manifest = read_at(f"{stored.uri}/{MANIFEST_NAME}")
    assert stored_manifest == manifest_bytes(stored.manifest)
    assert sha(stored_manifest) == stored.sha256
    assert store.exists(stored.uri)

    assert store.verify(stored.uri, stored.sha256) == stored.manifest

    local = store.fetch(stored.uri, stored.sha256)
    assert local.parent == private_tmp
    assert stat.S_IMODE(local.stat().st_mode) == 0o700
    assert read_tree(local) == {**FILES, MANIFEST_NAME: stored_manifest}


def test_fetch_into_given_destination(stored, store, tmp_path):
    dest = tmp_path / "deploy" / "credit-risk-3"
    assert store.fetch(stored.uri, stored.sha256, dest) == dest
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert (dest / "sub" / "b.bin").read_bytes() == FILES["sub/b.bin"]
    with pytest.raises(InvalidInput, match="already exists"):
        store.fetch(stored.uri, stored.sha256, dest)


def test_source_model_json_metadata_is_kept_and_overridden(store, source):
    (source / MANIFEST_NAME).write_text(json.dumps({"flavour": "autogluon", "target": "y"}))
    stored = store.put_directory(source, "models/m/1", {"target": "default"})
    manifest = store.verify(stored.uri, stored.sha256)
    assert manifest["flavour"] == "autogluon"
    assert manifest["target"] == "default"
    assert set(manifest["files"]) == set(FILES)


def test_local_store_uris_are_absolute_paths_and_file_urls_resolve(tmp_path, source):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    stored = store.put_directory(source, "models/m/1")
    assert stored.uri == str(tmp_path / "artifacts" / "models" / "m" / "1")
    assert (Path(stored.uri) / "model.pkl").read_bytes() == FILES["model.pkl"]
    assert store.verify("file://" + stored.uri, stored.sha256) == stored.manifest


def test_memory_store_uris_keep_the_protocol(source):
    root = memory_root()
    store = ArtifactStore(root + "/")
    try:
        stored = store.put_directory(source, "models/x/1")
        assert store.root == root
        assert stored.uri == f"{root}/models/x/1"
        assert read_at(f"{stored.uri}/a.txt") == FILES["a.txt"]
    finally:
        remove_at(root)


# ---- tampering -----------------------------------------------------------------------------------


def check_refused(store, stored, dest: Path, message: str) -> None:
    with pytest.raises(IntegrityError, match=message) as caught:
        store.verify(stored.uri, stored.sha256)
    assert stored.uri in str(caught.value)
    with pytest.raises(IntegrityError, match=message):
        store.fetch(stored.uri, stored.sha256, dest)
    assert not dest.exists()


def test_changed_byte_is_detected(store, stored, tmp_path):
    data = bytearray(FILES["model.pkl"])
    data[5] ^= 0x01
    write_at(f"{stored.uri}/model.pkl", bytes(data))
    actual, recorded = sha(bytes(data)), sha(FILES["model.pkl"])
    expected = rf"file 'model.pkl' changed \(sha256 {actual} != {recorded}\)"
    check_refused(store, stored, tmp_path / "out", expected)


@pytest.mark.parametrize("extra", ["extra.bin", "sub/deeper/extra.bin", "new/dir/extra.bin"])
def test_added_file_is_detected(store, stored, tmp_path, extra):
    write_at(f"{stored.uri}/{extra}", b"smuggled")
    check_refused(store, stored, tmp_path / "out", f"unexpected file '{extra}' not in manifest")


def test_removed_file_is_detected(store, stored, tmp_path):
    remove_at(f"{stored.uri}/a.txt")
    check_refused(store, stored, tmp_path / "out", "file 'a.txt' listed in manifest is missing")


def test_replaced_manifest_is_detected(store, stored, tmp_path):
    forged = manifest_bytes({**stored.manifest, "flavour": "something-else"})
    write_at(f"{stored.uri}/{MANIFEST_NAME}", forged)
    check_refused(
        store,
        stored,
        tmp_path / "out",
        f"manifest hash is {sha(forged)}, registry expects {stored.sha256}",
    )


def test_manifest_edited_to_match_changed_file_is_detected(store, stored, tmp_path):
    evil = b"\x80\x04a different pickle"
    write_at(f"{stored.uri}/model.pkl", evil)
    files = {**stored.manifest["files"], "model.pkl": {"sha256": sha(evil), "size": len(evil)}}
    forged = manifest_bytes({**stored.manifest, "files": files})
    write_at(f"{stored.uri}/{MANIFEST_NAME}", forged)
    check_refused(store, stored, tmp_path / "out", f"manifest hash is {sha(forged)}")
    # The forged manifest is self-consistent; only the registry's hash catches it.
    assert store.verify(stored.uri, sha(forged))["files"]["model.pkl"]["sha256"] == sha(evil)


def test_removed_manifest_is_detected(store, stored, tmp_path):
    remove_at(f"{stored.uri}/{MANIFEST_NAME}")
    check_refused(store, stored, tmp_path / "out", "MODEL.json is missing")


def test_every_problem_is_named(store, stored):
    write_at(f"{stored.uri}/a.txt", b"changed")
    remove_at(f"{stored.uri}/sub/b.bin")
    write_at(f"{stored.uri}/extra.bin", b"x")
    with pytest.raises(IntegrityError) as caught:
        store.verify(stored.uri, stored.sha256)
    message = str(caught.value)
    assert "file 'a.txt' changed" in message
    assert "file 'sub/b.bin' listed in manifest is missing" in message
    assert "unexpected file 'extra.bin' not in manifest" in message
    assert "\n" not in message


def test_fetch_failure_leaves_no_temporary_directory(store, stored, private_tmp):
    write_at(f"{stored.uri}/sub/deeper/c.json", b"{}")
    with pytest.raises(IntegrityError, match="file 'sub/deeper/c.json' changed"):
        store.fetch(stored.uri, stored.sha256)
    assert list(private_tmp.iterdir()) == []
    with pytest.raises(IntegrityError, match="manifest hash is"):
        store.fetch(stored.uri, "0" * 64)
    assert list(private_tmp.iterdir()) == []


def test_wrong_registry_hash_is_refused(store, stored):
    with pytest.raises(IntegrityError, match=f"registry expects {'a' * 64}"):
        store.verify(stored.uri, "a" * 64)
    assert store.verify(stored.uri, stored.sha256.upper()) == stored.manifest


# ---- refusals ------------------------------------------------------------------------------------


def test_missing_artifact_is_not_found(store, private_tmp):
    uri = store.root + "/models/none/1"
    assert not store.exists(uri)
    with pytest.raises(NotFound):
        store.verify(uri, "0" * 64)
    with pytest.raises(NotFound):
        store.fetch(uri, "0" * 64)
    with pytest.raises(NotFound):
        store.get_bytes(uri, "0" * 64)
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("bad_hash", ["", "abc", "g" * 64, "0" * 63, None])
def test_malformed_expected_hash_is_refused(store, stored, bad_hash):
    with pytest.raises(InvalidInput, match="SHA-256"):
        store.verify(stored.uri, bad_hash)


def test_uri_outside_root_is_refused(store, stored, tmp_path):
    for uri in [str(tmp_path / "elsewhere"), "s3://bucket/models/x/1", store.root]:
        with pytest.raises(InvalidInput, match="not under the artifact root"):
            store.verify(uri, stored.sha256)
    with pytest.raises(InvalidInput):
        store.exists(store.root + "/models/../../etc")


def test_put_to_existing_key_is_refused(store, source, stored):
    with pytest.raises(InvalidInput, match="already exists; stored artifacts are immutable"):
        store.put_directory(source, "models/credit-risk/3")
    with pytest.raises(InvalidInput, match="already exists"):
        store.put_bytes(b"x", "models/credit-risk/3")
    with pytest.raises(InvalidInput, match="already exists"):
        store.put_bytes(b"x", "models/credit-risk/3/model.pkl")
    with pytest.raises(InvalidInput, match="already exists"):
        store.put_directory(source, "models/credit-risk")
    assert store.verify(stored.uri, stored.sha256) == stored.manifest


def test_put_inside_an_existing_object_is_refused(store, source, stored):
    with pytest.raises(InvalidInput, match="would be inside the stored object"):
        store.put_directory(source, "models/credit-risk/3/nested")
    uri, _ = store.put_bytes(b"report", "reports/r1.html")
    with pytest.raises(InvalidInput, match="would be inside the stored object"):
        store.put_bytes(b"x", "reports/r1.html/x")
    assert store.verify(stored.uri, stored.sha256) == stored.manifest
    assert store.exists(uri)


BAD_KEYS = [
    "",
    "/abs",
    "a//b",
    "a/",
    "../x",
    "a/../b",
    "a/./b",
    "..",
    ".hidden",
    "a\\b",
    "a/*",
    "a b",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused(store, source, key):
    with pytest.raises(InvalidInput, match="key"):
        store.put_directory(source, key)
    with pytest.raises(InvalidInput, match="key"):
        store.put_bytes(b"x", key)


def test_failed_put_leaves_nothing_behind(store, source, monkeypatch):
    real_copy = artifacts._copy_hashing
    calls = []

    def failing_copy(src, out):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_copy(src, out)

    monkeypatch.setattr(artifacts, "_copy_hashing", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        store.put_directory(source, "models/m/1")
    monkeypatch.undo()
    assert not store.exists(store.root + "/models/m/1")
    fs, base = url_to_fs(store.root)
    assert fs.find(base) == []
    # The key is still free for a good attempt.
    stored = store.put_directory(source, "models/m/1")
    assert store.verify(stored.uri, stored.sha256) == stored.manifest


def test_bad_source_directory_stores_nothing(store, tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        store.put_directory(tmp_path / "missing", "models/m/1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="holds no files"):
        store.put_directory(tmp_path / "empty", "models/m/1")
    assert not store.exists(store.root + "/models/m/1")


# ---- single objects ------------------------------------------------------------------------------


def test_put_bytes_get_bytes_round_trip(store):
    data = b"<html>validation report</html>"
    uri, digest = store.put_bytes(data, "reports/credit-risk/3/validation.html")
    assert uri == store.root + "/reports/credit-risk/3/validation.html"
    assert digest == sha(data)
    assert store.exists(uri)
    assert store.get_bytes(uri, digest) == data
    with pytest.raises(InvalidInput, match="already exists"):
        store.put_bytes(b"other", "reports/credit-risk/3/validation.html")
    assert store.get_bytes(uri, digest) == data


def test_get_bytes_detects_tampering(store):
    uri, digest = store.put_bytes(b"snapshot", "datasets/german/1.parquet")
    write_at(uri, b"snapshoT")
    with pytest.raises(IntegrityError, match=f"sha256 is {sha(b'snapshoT')}, registry expects"):
        store.get_bytes(uri, digest)


def test_get_bytes_refuses_directory_and_put_bytes_refuses_non_bytes(store, stored):
    with pytest.raises(InvalidInput, match="is a directory"):
        store.get_bytes(stored.uri, stored.sha256)
    with pytest.raises(InvalidInput, match="needs bytes"):
        store.put_bytes("text", "reports/x.txt")


def test_verify_refuses_a_single_object(store):
    uri, digest = store.put_bytes(b"x", "models/m/1")
    with pytest.raises(IntegrityError, match="not an artifact directory"):
        store.verify(uri, digest)


# ---- property: any flipped byte is caught and named ----------------------------------------------

_segment = st.text(alphabet="abcdefgh_-.", min_size=1, max_size=6).filter(
    lambda s: s[0] not in ".-" and s not in (".", "..")
)
_relpath = st.lists(_segment, min_size=1, max_size=3).map("/".join)


def _no_prefix_clash(tree: dict[str, bytes]) -> bool:
    return not any(other.startswith(rel + "/") for rel in tree for other in tree)


_trees = st.dictionaries(_relpath, st.binary(min_size=1, max_size=300), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_trees.filter(_no_prefix_clash), data=st.data())
def test_any_flipped_byte_is_detected_and_named(tree, data):
    victim = data.draw(st.sampled_from(sorted(tree)), label="file")
    position = data.draw(st.integers(0, len(tree[victim]) - 1), label="byte")
    mask = data.draw(st.integers(1, 255), label="xor")
    root = memory_root()
    store = ArtifactStore(root)
    with tempfile.TemporaryDirectory() as work:
        try:
            stored = store.put_directory(make_tree(Path(work) / "src", tree), "models/p/1")
            assert store.verify(stored.uri, stored.sha256) == stored.manifest
            flipped = bytearray(tree[victim])
            flipped[position] ^= mask
            write_at(f"{stored.uri}/{victim}", bytes(flipped))
            with pytest.raises(IntegrityError, match=re.escape(f"file '{victim}' changed")):
                store.verify(stored.uri, stored.sha256)
            dest = Path(work) / "out"
            with pytest.raises(IntegrityError, match=re.escape(f"file '{victim}' changed")):
                store.fetch(stored.uri, stored.sha256, dest)
            assert not dest.exists()
        finally:
            remove_at(root)
