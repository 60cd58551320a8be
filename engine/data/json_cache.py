"""Cache files of built corpora: gzip'd JSON, written atomically, checked when read.

A corpus takes seconds to minutes to build and is read on every run, so it is kept as one
gzip'd JSON file per build key. The file is written to a temporary name, synced and renamed
(``checkpoint.atomic_write``), so a reader never sees half a file and two concurrent builds do
not corrupt each other. A file that is missing, of an old format, of another key, truncated or
damaged (gzip's CRC, JSON, the payload's own fields) reads as None: the caller rebuilds it.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from pathlib import Path

log = logging.getLogger(__name__)


def read_cache(path, *, format: int, key: str) -> dict | None:
    """The payload of a cache file written by ``write_cache`` with this ``format`` and ``key``,
    or None (missing, stale or damaged; a damaged file is reported and costs a rebuild)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            payload = json.load(f)
    except (OSError, EOFError, ValueError, zlib.error) as e:   # gzip CRC/length, truncation, a
        # damaged deflate stream (zlib.error: "invalid distance too far back"), JSON, UTF-8
        log.warning("rebuilding: cache file %s is damaged (%s)", path, e)
        return None
    if not isinstance(payload, dict) or payload.get("format") != format or payload.get("key") != key:
        return None
    return payload


def write_cache(path, payload: dict, *, format: int, key: str) -> None:
    """Write ``payload`` (plus its ``format`` and ``key``) atomically. A cache that cannot be
    written is a warning, not an error: the next run builds again."""
    from ..checkpoint import atomic_write

    data = json.dumps({**payload, "format": format, "key": key}, ensure_ascii=False).encode("utf-8")
    try:
        atomic_write(path, gzip.compress(data, compresslevel=3, mtime=0))
    except OSError as e:
        log.warning("could not write the cache file %s: %s", path, e)
