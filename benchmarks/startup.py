"""Start-up: seconds from `picu-endotype serve` to the first 200 from `/healthz`, per scorer.

Run from the repository root:

    uv run python benchmarks/startup.py            # baseline and this tree, 5 starts each
    uv run python benchmarks/startup.py --quick    # 2 starts each

For the baseline revision and for this tree, with `scorer = "rules"` and with `scorer = "model"`,
it starts `picu-endotype serve` (2 workers, a fresh state directory) the given number of times,
alternating between the variants, and prints the median and the fastest time to healthy. The
figures depend on whether the installed packages carry compiled bytecode (`uv sync
--compile-bytecode`, as the Dockerfile does): without it every start compiles scikit-learn and
SciPy again; the script says which is the case.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from devtools import (
    LOOPBACK,
    compared_trees,
    free_port,
    served,
    settings_toml,
)

BEFORE = "8a4a616"  # main before the concurrent worker model


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 starts per variant")
    parser.add_argument("--baseline", default=BEFORE, help="git revision to compare ('' for none)")
    parser.add_argument("--starts", type=int, default=5, help="starts per variant")
    args = parser.parse_args(argv)
    if args.quick:
        args.starts = 2
    return args


def bytecode_note() -> str:
    """Whether scikit-learn's modules are installed with compiled bytecode."""
    spec = importlib.util.find_spec("sklearn.base")
    cached = spec.cached if spec else None
    compiled = bool(cached and Path(cached).exists())
    writes = (
        "" if not os.environ.get("PYTHONDONTWRITEBYTECODE") else ", PYTHONDONTWRITEBYTECODE set"
    )
    return f"installed packages {'have' if compiled else 'lack'} compiled bytecode{writes}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="picu-startup-") as tmp:
        workdir = Path(tmp)
        trees = compared_trees(args.baseline, workdir)
        variants = [(tree, scorer) for tree in trees for scorer in ("rules", "model")]
        seconds: dict[tuple[str, str], list[float]] = {}
        for run in range(args.starts):
            for tree, scorer in variants:
                port = free_port()
                config = workdir / f"settings-{run}-{port}.toml"
                config.write_text(
                    settings_toml(
                        {
                            "public_base_url": f"http://{LOOPBACK}:{port}",
                            "host": LOOPBACK,
                            "port": port,
                            "state_dir": str(workdir / f"var-{run}-{port}"),
                            "scorer": scorer,
                            "log_level": "WARNING",
                        }
                    )
                )
                with served(tree, config, workdir / "serve.log") as service:
                    seconds.setdefault((tree.label, scorer), []).append(service.startup_seconds)
                print(f"{tree.label:<20}{scorer:<7}{seconds[(tree.label, scorer)][-1]:6.2f} s")
    print()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {bytecode_note()}")
    print(f"{'tree':<20}{'scorer':<8}{'median s':>9}{'fastest s':>10}   ({args.starts} starts)")
    for (label, scorer), times in seconds.items():
        print(f"{label:<20}{scorer:<8}{statistics.median(times):>9.2f}{min(times):>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
