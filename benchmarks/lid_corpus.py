"""What the many-source language-id corpus costs to build and what it holds.

    python benchmarks/lid_corpus.py [--cache DIR] [--max-per-source N] [--max-per-language N]
                                    [--sources a,b] [--held-out a,b] [--min-strings N] [--workers N] [--out FILE]

Without ``--cache`` the build starts from an empty temporary cache, so it measures a first
build on this machine: every download (bytes and seconds per source), the reading of every
source (CPU seconds: wall time depends on what else runs) and the assembly. With ``--cache``
it measures a build from that cache (a second run reads the finished corpus). Writes
benchmarks/results/lid_corpus.json: the timings, the languages covered with at least 1,000
and 3,000 strings, and the manifest (strings per language per source, package versions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from lstm_engine import __version__
from lstm_engine.data import lid_corpus

OUT = Path(__file__).parent / "results" / "lid_corpus.json"


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(cache: Path, options: dict, workers: int | None, locale_root: str) -> dict:
    wall, cpu = time.perf_counter(), _cpu_seconds()
    corpus = lid_corpus.load_lid_corpus(cache_dir=cache, workers=workers, locale_root=locale_root,
                                        progress=None, **options)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    manifest = corpus.manifest
    totals = {label: entry["total"] for label, entry in manifest["languages"].items()}
    return {
        "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
        "from_cache": manifest["from_cache"],
        "download": manifest["download"],
        "per_source": {name: {"status": s["status"], "packages": len(s["packages"]), "download": s["download"],
                              "cpu_seconds": s["cpu_seconds"], "languages_read": len(s["read"]),
                              "strings_read": sum(s["read"].values()), "strings_kept": sum(s["kept"].values())}
                       for name, s in manifest["sources"].items()},
        "languages": len(totals),
        "languages_with_at_least": {str(n): sum(t >= n for t in totals.values()) for n in (1000, 3000, 5000)},
        "strings": manifest["totals"],
        "manifest": manifest,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: a fresh temporary one)")
    parser.add_argument("--sources", default=None, help="comma-separated sources (default: all)")
    parser.add_argument("--held-out", default="", help="comma-separated held-out sources")
    parser.add_argument("--max-per-source", default=lid_corpus.DEFAULTS["max_per_source"])
    parser.add_argument("--max-per-language", default=lid_corpus.DEFAULTS["max_per_language"])
    parser.add_argument("--min-strings", type=int, default=lid_corpus.DEFAULTS["min_strings"])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--locale-root", default="/usr/share/locale", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    options = {"sources": args.sources, "held_out_sources": args.held_out,
               "max_per_source": args.max_per_source, "max_per_language": args.max_per_language,
               "min_strings": args.min_strings}
    with tempfile.TemporaryDirectory(prefix="lid-corpus-bench-") as scratch:
        cache = args.cache or Path(scratch)
        first = measure(cache, options, args.workers, args.locale_root)
        again = measure(cache, options, args.workers, args.locale_root)
    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "lstm_engine": __version__,
                    "load_average": os.getloadavg()},
        "cache": "fresh" if args.cache is None else str(args.cache),
        "options": lid_corpus.check_options(**options),
        "build": first,
        "cached_load": {k: again[k] for k in ("wall_seconds", "cpu_seconds", "from_cache")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{first['languages']} languages ({first['languages_with_at_least']['1000']} with >= 1000 strings, "
          f"{first['languages_with_at_least']['3000']} with >= 3000), {first['strings']['all']} strings; "
          f"build {first['wall_seconds']} s wall, {first['cpu_seconds']} s CPU, "
          f"{first['download']['bytes'] / 1e6:.0f} MB downloaded in {first['download']['seconds']} s; "
          f"cached load {again['wall_seconds']} s -> {args.out}")
    return results


if __name__ == "__main__":
    main()
