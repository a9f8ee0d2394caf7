"""The speed benchmark runs end to end (its timings are not checked: never time a test)."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_bench_interleaves_the_variants_without_changing_their_arithmetic(
    real_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, "benchmarks/bench.py", "--models", "mlp", "--epochs", "2"]
    # 5,000 training images keep it short; (c) tests its better epoch, the second, as (a) and (b) do
    command += ["--speedrun-seeds", "0", "--write", str(out), f"data.root={real_data_root}"]
    done = subprocess.run([*command, "data.val_size=55000"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (row,) = [line for line in out.read_text().splitlines() if line.startswith("| mlp | 32 |")]
    a, b, c = (float(acc) for acc in row.split("|")[-2].split(" / "))
    assert b == c > 0.85 and a > 0.85  # (b) and (c) take the same steps in between the others' epochs
    for variant in "abc":
        (line,) = [line for line in done.stdout.splitlines() if line.startswith(f"mlp ({variant}): ")]
        assert len(line.split(" s/epoch")[0].split()[2:]) == 2
