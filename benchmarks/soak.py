"""Soak (reliability): the slow 50,000-id crawl with ~10 % mixed faults, as a subprocess.

Runs ``python -m pytest -m slow tests/reliability/test_rel_soak.py -q -s`` and reports the
figures its ``[soak]`` line prints. The test itself asserts the accounting (every id
fetched, missing or failed; no duplicate line) and flat memory (peak <= 1.2x the
mid-crawl peak); this section shows the numbers behind those assertions.

The test reads ``ru_maxrss``, which on Linux carries over through fork and exec: started
straight from this (large) process it would report at least this process's RSS. So it
is started from a shell that forks it, whose own small RSS is all it inherits.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from .harness import SectionResult

TITLE = "Soak (reliability): 50,000 ids, ~10 % mixed faults"
REPO = Path(__file__).resolve().parents[1]
TEST = "tests/reliability/test_rel_soak.py"
TIMEOUT = 900.0
_FIGURE = re.compile(r"(\w+)=([0-9.]+)")


def run(quick: bool) -> SectionResult | None:
    """The soak test in a subprocess (skipped with ``--quick``: it takes a minute or more)."""
    if quick:
        print("\nskipped: soak (not in --quick)")
        return None
    result = SectionResult(TITLE)
    command = [sys.executable, "-m", "pytest", "-m", "slow", TEST, "-q", "-s", "-p",
               "no:cacheprovider"]
    # `; exit $?` keeps the shell from exec-ing pytest in its place: pytest is forked
    # from the shell, so its ru_maxrss starts from the shell's, not ours.
    shell = ["sh", "-c", '"$@"; exit $?', "sh", *command]
    t0 = time.perf_counter()
    proc = subprocess.run(shell, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT,
                          check=False)
    wall = time.perf_counter() - t0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("[soak]")), None)
    result.raw = {"returncode": proc.returncode, "wall_s": wall, "line": line,
                  "tail": proc.stdout[-3000:] + proc.stderr[-2000:]}
    if line is None:
        result.add("soak test", None, "", note=f"exit {proc.returncode}, no [soak] line: "
                   + (proc.stdout + proc.stderr).strip()[-300:])
        return result
    figures = {k: float(v) for k, v in _FIGURE.findall(line)}
    passed = proc.returncode == 0
    result.add("pytest", 1.0 if passed else 0.0, "passed", target="passed", ok=passed,
               note="" if passed else proc.stdout.strip()[-300:])
    for name, unit in (("ids", "ids"), ("fetched", "ids"), ("missing", "ids"),
                       ("failed", "ids"), ("requests", "requests"), ("retries", "retries"),
                       ("faults", "faults")):
        result.add(name, figures.get(name), unit)
    accounted = sum(figures.get(k, 0.0) for k in ("fetched", "missing", "failed"))
    ids = figures.get("ids", 0.0)
    result.add("ids accounted (fetched + missing + failed)", accounted, "ids",
               target=f"== {ids:,.0f}", ok=accounted == ids)
    result.add("lost", figures.get("lost"), "ids", target="0", ok=figures.get("lost") == 0)
    peak, mid = figures.get("peak_rss_mb"), figures.get("mid_rss_mb")
    result.add("peak RSS", peak, "MiB", note="ru_maxrss at the end of the crawl")
    result.add("mid-crawl peak RSS", mid, "MiB", note="ru_maxrss halfway through")
    if peak and mid:
        result.add("peak / mid-crawl peak", peak / mid, "x", target="<= 1.2x",
                   ok=peak / mid <= 1.2)
    result.add("wall time", wall, "s", note="pytest start-up included")
    result.notes.append(f"python -m pytest -m slow {TEST} -q -s (forked from sh)")
    return result
