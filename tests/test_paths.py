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
