"""RESULTS.md sections: a results script rewrites its own section and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from results_sections import write_section  # noqa: E402


def test_a_section_is_replaced_in_place_and_its_neighbours_are_left_alone(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# vivarl results\n\n"
        "<!-- section: a (scripts/a.py) -->\nold a\n<!-- end section: a -->\n\n"
        "## Hand-written\nnotes\n\n"
        "<!-- section: b (scripts/b.py) -->\nold b\n<!-- end section: b -->\n"
    )
    write_section(results, "a", "## A\n\nnew a", source="scripts/a.py")
    assert results.read_text() == (
        "# vivarl results\n\n"
        "<!-- section: a (scripts/a.py) -->\n## A\n\nnew a\n<!-- end section: a -->\n\n"
        "## Hand-written\nnotes\n\n"
        "<!-- section: b (scripts/b.py) -->\nold b\n<!-- end section: b -->\n"
    )
    write_section(results, "c", "new c")
    assert results.read_text().endswith(
        "old b\n<!-- end section: b -->\n\n<!-- section: c -->\nnew c\n<!-- end section: c -->\n"
    )


def test_the_first_section_creates_the_file(tmp_path):
    results = tmp_path / "RESULTS.md"
    write_section(results, "a", "body", source="scripts/a.py")
    assert (
        results.read_text()
        == "# vivarl results\n\n<!-- section: a (scripts/a.py) -->\nbody\n<!-- end section: a -->\n"
    )


def test_a_reused_backbone_made_with_other_overrides_is_named_with_each_difference(tmp_path):
    import json

    from results_valuemodel import backbone_mismatches  # noqa: E402

    from valuemodel.backbone import TINY_TRANSFORMER

    (tmp_path / "transformer").mkdir()
    saved = json.loads(json.dumps({**TINY_TRANSFORMER, "num_layers": 4, "ffn_dim": 512}))
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({**saved, "_class_name": "Wan"}))
    assert backbone_mismatches(tmp_path, {"num_layers": 4, "ffn_dim": 512}) == []
    problems = backbone_mismatches(tmp_path, {"num_layers": 2})
    assert sorted(problems) == [
        "ffn_dim: folder has 512, flags ask for 128",
        "num_layers: folder has 4, flags ask for 2",
    ]


def test_reuse_records_again_only_the_stores_made_with_other_knobs(tmp_path):
    import json

    from results_valuemodel import RECORDING_FILE, stores_to_record  # noqa: E402

    wanted = {"train": {"episodes": 24, "retry": 0.0}, "eval": {"episodes": 48, "retry": 0.6}}
    assert stores_to_record(tmp_path, wanted, reuse=True) == ["train", "eval"]  # nothing recorded yet
    (tmp_path / "train").mkdir()
    (tmp_path / "eval").mkdir()
    saved = {"train": {"episodes": 24, "retry": 0.0}, "eval": {"episodes": 24, "retry": 0.3}}
    (tmp_path / RECORDING_FILE).write_text(json.dumps(saved))
    assert stores_to_record(tmp_path, wanted, reuse=True) == ["eval"]
    assert stores_to_record(tmp_path, wanted, reuse=False) == ["train", "eval"]
    (tmp_path / RECORDING_FILE).write_text(json.dumps({**saved, "eval": wanted["eval"]}))
    assert stores_to_record(tmp_path, wanted, reuse=True) == []
    (tmp_path / "eval").rmdir()  # listed as recorded but gone: recorded again
    assert stores_to_record(tmp_path, wanted, reuse=True) == ["eval"]
