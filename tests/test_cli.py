"""The vlcore command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("command", ["check-config --show CONFIG", "clean-report REPORT"])
def test_output_cut_short_by_the_reader_is_no_error(tmp_path, command: str):
    """`vlcore ... | head`: the reader goes away early. `true` reads nothing and exits while
    Python is still importing, so the writes meet a closed pipe: a long output (the merged
    config) while printing, a short one (a cleaning report) when stdout is flushed."""
    report = tmp_path / "r.json"
    report.write_text('{"rows_in": 5, "rows_kept": 4, "dropped": {"too_small": 1}}')
    args = command.replace("CONFIG", str(REPO / "config" / "config.yaml"))
    args = args.replace("REPORT", str(report)).split()
    shell = " ".join(f"'{c}'" for c in [sys.executable, "-m", "vlcore.cli", *args]) + " | true"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, cwd=REPO
    )
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 141  # as a shell tool stopped by SIGPIPE
