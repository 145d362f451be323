"""The vlcore command line."""

from __future__ import annotations

from tests.conftest import REPO
from vlcore.cli import main


def test_check_config_ok_and_error(tmp_path, capsys):
    assert main(["check-config", str(REPO / "config" / "config.yaml")]) == 0
    assert "ok: experiment 'default'" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiments:\n  default:\n    sedd: 1\n    source: {format: synthetic}\n")
    assert main(["check-config", str(bad)]) == 1
    assert "unknown key 'sedd'" in capsys.readouterr().err


def test_synthetic_subcommand_and_reports(tmp_path, capsys):
    out = tmp_path / "tsv"
    assert (
        main(["synthetic", "export", "--format", "base64_tsv", "--n", "5", "--out", str(out)]) == 0
    )
    assert (out / "data.tsv").is_file()
    report = tmp_path / "r.json"
    report.write_text(
        '{"rows_in": 5, "rows_kept": 4, "dropped": {"too_small": 1, "corrupt_image": 0},'
        ' "captions_dropped": {"off_domain": 2}}'
    )
    assert main(["clean-report", str(report)]) == 0
    text = capsys.readouterr().out
    assert "too_small" in text and "corrupt_image" not in text and "off_domain" in text
    assert main(["verify-shards", str(tmp_path / "nowhere")]) == 1
