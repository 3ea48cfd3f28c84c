"""The shared versioned-folder layout: atomic publish, complete-only listing, newest-version resolution."""

from pathlib import Path

import pytest

from checkpoints import CheckpointError, list_versions, publish_version, resolve_version, version_dir

FILES = ("config.json", "weights.bin")


def write_files(staging: Path) -> None:
    for name in FILES:
        (staging / name).write_text(name)


def test_publish_lists_and_resolves_the_newest_complete_version(tmp_path: Path) -> None:
    for version in (0, 2):
        assert publish_version(tmp_path, version, write_files, "model") == version_dir(tmp_path, version)
    # A torn version (a crash before every file was written) and a staging leftover are not versions.
    (tmp_path / "v000005").mkdir()
    (tmp_path / "v000005" / "config.json").write_text("{}")
    (tmp_path / ".tmp-v000006-123").mkdir()
    assert list_versions(tmp_path, FILES) == [0, 2]
    assert resolve_version(tmp_path, FILES, "model") == tmp_path / "v000002"
    assert resolve_version(tmp_path / "v000000", FILES, "model") == tmp_path / "v000000"


def test_publish_refuses_to_replace_a_version_and_leaves_it_intact(tmp_path: Path) -> None:
    publish_version(tmp_path, 1, write_files, "model")
    with pytest.raises(FileExistsError, match="model version 1 already exists"):
        publish_version(tmp_path, 1, lambda staging: (staging / "config.json").write_text("other"), "model")
    assert (tmp_path / "v000001" / "config.json").read_text() == "config.json"


def test_a_failed_write_publishes_nothing(tmp_path: Path) -> None:
    def crash(staging: Path) -> None:
        (staging / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        publish_version(tmp_path, 0, crash, "model")
    assert list(tmp_path.iterdir()) == [], "neither the version nor its staging folder may be left behind"


class ModelCheckpointError(CheckpointError):
    pass


def test_resolve_names_what_is_missing_with_the_owners_error(tmp_path: Path) -> None:
    with pytest.raises(ModelCheckpointError, match="no model at .* does not exist"):
        resolve_version(tmp_path / "absent", FILES, "model", ModelCheckpointError)
    with pytest.raises(CheckpointError, match="holds no complete model version"):
        resolve_version(tmp_path, FILES, "model")
    torn = tmp_path / "v000003"
    torn.mkdir()
    (torn / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"incomplete: missing \['weights.bin'\]"):
        resolve_version(torn, FILES, "model")
    with pytest.raises(ValueError, match="version must be >= 0"):
        version_dir(tmp_path, -1)
