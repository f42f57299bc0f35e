"""The CLI's validation pass over a large ids file: peak RSS and wall time, measured once.

Not a section of ``python -m benchmarks`` (minutes of work and a file of hundreds of MB);
run it by hand, the figures are recorded in docs/reliability.md::

    python -m benchmarks.idscheck --ids 10000000            # writes the file to a temp dir
    python -m benchmarks.idscheck --file ids.txt            # an existing file

The check runs in a fresh child process, which reports its own high-water mark (VmHWM)
after ``check_ids_file`` returns; the baseline is the child's RSS after importing the
package and before the pass.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .memory import _rss_mib


def _write_ids(path: Path, n: int) -> None:
    with path.open("w") as out:
        step = 100_000
        for start in range(0, n, step):
            stop = min(n, start + step)
            out.write("".join(f"{7_000_000_000_000_000_000 + i * 7_919}\n"
                              for i in range(start, stop)))


def _child(path: str) -> None:
    from keyapi_async.bulk.idsfile import IdsFile, check_ids_file

    before = _rss_mib()
    started = time.perf_counter()
    with IdsFile(path) as ids:
        check = check_ids_file(ids)
    print(json.dumps({
        "ids": check.ids, "unique": check.unique, "seconds": time.perf_counter() - started,
        "rss_before_mib": before, "peak_rss_mib": _rss_mib(),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=10_000_000)
    parser.add_argument("--file", help="an existing ids file (default: generate one)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.file) if args.file else Path(tmp) / "ids.txt"
        if not args.file:
            _write_ids(path, args.ids)
        size = path.stat().st_size
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.idscheck", "--child", str(path)],
            check=True, capture_output=True, text=True,
        ).stdout
    result = json.loads(out)
    print(f"{result['ids']:,} ids ({size / 2**20:,.0f} MiB): {result['seconds']:.1f} s, "
          f"peak RSS {result['peak_rss_mib']:.0f} MiB "
          f"(import baseline {result['rss_before_mib']:.0f} MiB)")


if __name__ == "__main__":
    main()
