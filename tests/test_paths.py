"""One path layer for local directories and gs:// alike."""

from scaling import paths


def test_join_keeps_urls_urls():
    assert paths.join("gs://bucket/sweep", "plots", "a.png") == "gs://bucket/sweep/plots/a.png"
    assert paths.join("gs://bucket/sweep/", "/plots") == "gs://bucket/sweep/plots"
    assert paths.join("runs", "x") == "runs/x"
    assert paths.is_local("runs/x") and not paths.is_local("gs://b/x")


def test_absolute_only_for_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert paths.absolute("runs/x") == str(tmp_path / "runs" / "x")
    assert paths.absolute("gs://b/x") == "gs://b/x"


def test_write_atomic_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "d" / "run.json"
    paths.makedirs(target.parent)
    paths.write_atomic(target, "first")
    paths.write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["run.json"]


def test_write_atomic_on_object_stores_is_one_whole_object_write(fake_gcs, monkeypatch):
    # An object write is atomic by itself; a temporary object and a "rename" would be a copy
    # and a delete (and a GCS emulator rejects gcsfs's moveTo request), so none may happen.
    cls = type(paths.path("gs://bucket/x"))

    def no_rename(self, target):
        raise AssertionError(f"renamed {self} -> {target}")

    monkeypatch.setattr(cls, "replace", no_rename)
    monkeypatch.setattr(cls, "rename", no_rename)
    paths.write_atomic("gs://bucket/d/run.json", "first")
    paths.write_atomic("gs://bucket/d/run.json", b"second")
    assert {k: v.getvalue() for k, v in fake_gcs.items()} == {"/bucket/d/run.json": b"second"}
