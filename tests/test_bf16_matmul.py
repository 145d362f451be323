"""bench/bf16_matmul.py: fp32 and bf16 matrix products timed side by side per oneDNN ISA cap."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def bench_table(*flags: str) -> tuple[str, list[list[str]]]:
    """Run bench/bf16_matmul.py with ``flags``: its header line and its rows' cells."""
    command = [sys.executable, str(REPO / "bench" / "bf16_matmul.py"), *flags]
    out = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    header, *lines = out.stdout.splitlines()
    return header, [[cell.strip() for cell in line.split("|")] for line in lines]


def test_command_line_prints_a_ratio_per_shape_and_isa():
    _, rows = bench_table("--isa", "DEFAULT", "AVX512_CORE")
    assert [(row[0], row[1]) for row in rows] == [
        ("DEFAULT", "3840x128x256"), ("DEFAULT", "3840x256x128"),
        ("AVX512_CORE", "3840x128x256"), ("AVX512_CORE", "3840x256x128")]  # fmt: skip
    for row in rows:
        fp32, bf16, ratio = (float(cell) for cell in row[2:])
        assert fp32 > 0 and bf16 > 0 and abs(ratio - bf16 / fp32) < 0.02 * ratio + 0.01


def test_attention_is_timed_forward_and_backward_at_the_captioners_sizes():
    header, rows = bench_table("--attention")
    assert "texts x heads x q x k x width" in header
    assert [row[1] for row in rows] == ["128x4x30x30x32", "128x4x30x64x32"]
    for row in rows:
        assert float(row[2]) > 0 and float(row[3]) > 0


def test_muon_times_newton_schulz_over_vit_gpt2s_matrices_in_both_precisions():
    header, (row,) = bench_table("--muon")
    assert "vit_gpt2's matrices" in header
    assert row[:2] == ["DEFAULT", "36"]  # 3 stem filters, 2 ViT layers x 6, 3 GPT-2 layers x 7
    assert float(row[2]) > 0 and float(row[3]) > 0
