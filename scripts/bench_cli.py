"""How long `citeagent --help` takes, against a bare interpreter start in the same process.

    .venv/bin/python scripts/bench_cli.py [--repeats 7]

Prints JSON: the median wall and CPU seconds of `python -c pass` (the baseline) and of
`python -m citeagent.cli --help`, their ratio, and which heavy libraries the help imported
(the goal: none, and under 0.5 s). CPU seconds are the children's user + system time, which a
busy shared machine inflates less than wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "transformers", "numpy", "fastapi", "sqlalchemy", "bcrypt", "matplotlib", "trl", "peft")
PROBE = ("import sys, runpy; sys.argv = ['citeagent', '--help']\n"
         "try:\n    runpy.run_module('citeagent.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
         f"print('HEAVY', ','.join(m for m in {HEAVY!r} if m in sys.modules))")


def timed(cmd: list[str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), check=True).stdout
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    base = [timed([sys.executable, "-c", "pass"]) for _ in range(args.repeats)]
    help_ = [timed([sys.executable, "-m", "citeagent.cli", "--help"]) for _ in range(args.repeats)]
    probe = timed([sys.executable, "-c", PROBE])[2]
    heavy = [m for m in probe.rsplit("HEAVY ", 1)[-1].strip().split(",") if m]
    med = {name: {"wall_s": statistics.median(r[0] for r in runs), "cpu_s": statistics.median(r[1] for r in runs)}
           for name, runs in (("python_start", base), ("citeagent_help", help_))}
    print(json.dumps({
        **med,
        "help_over_start_wall": med["citeagent_help"]["wall_s"] / med["python_start"]["wall_s"],
        "help_over_start_cpu": med["citeagent_help"]["cpu_s"] / max(med["python_start"]["cpu_s"], 1e-9),
        "help_under_0_5_s": med["citeagent_help"]["wall_s"] < 0.5,
        "heavy_modules_imported_by_help": heavy,
        "repeats": args.repeats,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
