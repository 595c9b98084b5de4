"""The soak benchmark (bench/soak.py) as a 2-minute smoke run, and proof that its verdict can fail."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from helpers import REPO


def soak(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run bench/soak.py from this tree with `args`; its exit code and output."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_soak_smoke_run_passes() -> None:
    """Two minutes of 100 endpoints (healthy, slow, flapping, hostile) on one worker process, a reload every 20 s.

    The hour's RSS check compares the minute after a 10-minute warm-up with the last minute; two
    minutes have no such window, so the smoke run compares 30-75 s with 75-120 s and allows 25 %.
    """
    run = soak(
        *("--duration", "120", "--endpoints", "100", "--workers", "1", "--reload-every", "20"),
        *("--warmup", "30", "--max-rss-growth", "25"),
        timeout=300,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "verdict: PASS" in out
    assert "counters monotonic: yes" in out
    assert "false failures: 0" in out
    assert "RSS growth after the warm-up:" in out, out
    reloads = re.search(r"^reloads: (\d+) ok, 0 failed$", out, re.MULTILINE)
    assert reloads is not None and int(reloads[1]) >= 5, out
    flap = re.search(r"^flapping states matching their schedule: (\d+)/(\d+)", out, re.MULTILINE)
    assert flap is not None and int(flap[2]) > 0, out
    # the hostile targets were probed and failed, every one of their 8 kinds
    assert len(re.findall(r"^  failures of (?!flapping)\S+: ", out, re.MULTILINE)) == 8, out
    assert re.search(r"^\[  1:\d\d\] rss ", out, re.MULTILINE), out  # the line a minute


def test_soak_fails_when_slow_targets_miss_their_timeout() -> None:
    """Slow targets answering after 1.2 times their timeout are false failures: exit 1 and a FAIL verdict."""
    run = soak("--duration", "40", "--endpoints", "50", "--slow-fraction", "1.2", timeout=180)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "verdict: FAIL" in out
    assert re.search(r"^- \d+ false failures: .*\('slow', 'timeout'\)", out, re.MULTILINE), out
