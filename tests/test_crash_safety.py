"""Crash safety: a training process killed at random moments (SIGKILL, nothing runs on the way
out) always leaves a last checkpoint that loads, and ``--resume`` from it ends where an
uninterrupted run ends; a full disk during a checkpoint or corpus-cache write is a clear
error that leaves the previous file whole and no partial file; a damaged corpus cache is
rebuilt, never loaded.

The killed runs use the numpy backend and a tiny model, so an epoch takes milliseconds and a
checkpoint is written many times a second; the child writes its files in 512-byte pieces
with a pause after each (a patched ``os.fdopen``) and reports on stdout when a checkpoint
write starts, so that half of the kills can be aimed inside a write.
"""

from __future__ import annotations

import gzip
import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lstm_engine import runs
from lstm_engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from lstm_engine.data import SPLITS
from lstm_engine.data import gettext_corpus as gc
from lstm_engine.errors import WriteError

from test_text_data import locale_root  # noqa: F401  (a fixture: a fake locale tree)

#: Kills in the SIGKILL test (the issue asks for at least 20).
KILLS = 20
#: The killed run: tiny, on the numpy backend (no compiling), many short epochs. A small n-gram
#: table too: with the default's 131,072 rows a checkpoint is 6 MB, and the slowed writer below
#: takes half a minute over each.
SETTINGS = {"epochs": 14, "hidden_size": 6, "embedding_dim": 4, "batch_size": 32, "warmup_steps": 0,
            "seed": 3, "ngram_buckets": 64}

_CHILD = textwrap.dedent("""
    import os, sys, time
    out, data, settings = sys.argv[1], sys.argv[2], eval(sys.argv[3])
    real_fdopen = os.fdopen

    class Slow:
        # a file whose writes go out in 512-byte pieces with a pause after each, so that a
        # kill can land half-way through a checkpoint
        def __init__(self, f):
            self.f = f
        def write(self, data):
            print("W", flush=True)
            for i in range(0, len(data), 512):
                self.f.write(data[i:i + 512]); self.f.flush(); time.sleep(0.002)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self.f.__exit__(*exc)
        def __getattr__(self, name):
            return getattr(self.f, name)

    os.fdopen = lambda fd, mode="r", *a, **k: Slow(real_fdopen(fd, mode, *a, **k)) if "w" in mode else real_fdopen(fd, mode, *a, **k)
    from lstm_engine import runs
    print("R", flush=True)
    resume = os.path.exists(os.path.join(out, "last.safetensors"))
    runs.run("language-id", {**settings, "data": data}, out, backend="numpy", resume=resume, test=False,
             progress=False)
    print("D", flush=True)
""")


def _start(out: Path, data: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(out), str(data), repr(SETTINGS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_while_writing(child: subprocess.Popen, rng: random.Random) -> None:
    """Wait for the start of a random (2nd-4th: the 1st is config.json) file write, then kill
    within its first ~30 ms, unless the run finishes first."""
    writes, wanted = 0, rng.randint(2, 4)
    for line in child.stdout:
        if line.strip() == "W":
            writes += 1
            if writes == wanted:
                time.sleep(rng.uniform(0.0, 0.03))
                child.send_signal(signal.SIGKILL)
                return
        if line.strip() == "D":
            return


def _kill_at_random(child: subprocess.Popen, rng: random.Random) -> None:
    """Kill at a uniformly random moment of the run (after its imports), unless it ends first."""
    assert child.stdout.readline().strip() == "R", child.stderr.read()
    try:
        child.wait(timeout=rng.uniform(0.0, 1.5))
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)


def _params(path: Path) -> dict:
    return load_checkpoint(path).tensors


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path, lid_tsv):
    """KILLS kills of one run, each followed by checks of what it left and a resume (the next
    child), until the run completes; its final parameters equal an uninterrupted run's."""
    reference = tmp_path / "reference"
    runs.run("language-id", {**SETTINGS, "data": str(lid_tsv)}, reference, backend="numpy", test=False,
             progress=False)
    out = tmp_path / "killed"
    rng = random.Random(11)
    kills = in_write = 0
    epochs_seen = []
    while kills < KILLS:
        child = _start(out, lid_tsv)
        (_kill_while_writing if kills % 2 else _kill_at_random)(child, rng)
        child.wait(timeout=120)
        # the exit says whether the kill landed: a kill sent in the last milliseconds of the
        # run can find it already exited
        if child.returncode != -signal.SIGKILL:  # the run completed before the kill: start over
            assert child.returncode == 0, child.stderr.read()
            for f in out.iterdir():
                f.unlink()
            continue
        kills += 1
        leftovers = [p.name for p in out.glob(".*.tmp")] if out.exists() else []
        in_write += bool(leftovers)
        for p in out.glob(".*.tmp"):
            p.unlink()                       # a crashed writer's temporary file is never read
        last = out / "last.safetensors"
        if last.exists():
            ckpt = load_checkpoint(last)     # the last good checkpoint always loads
            epochs_seen.append(ckpt.train["state"]["epoch"])
            if (out / "best.safetensors").exists():
                load_checkpoint(out / "best.safetensors")
            history = ckpt.train["state"]["history"]
            assert [r["epoch"] for r in history] == list(range(1, len(history) + 1))
        elif out.exists():
            for f in out.iterdir():          # killed before its first checkpoint: start over
                f.unlink()
    assert in_write >= KILLS // 4, f"only {in_write} of {KILLS} kills landed inside a file write"
    assert max(epochs_seen, default=0) >= 1, "no kill came after a checkpoint"
    # the last resume runs to the end: the same parameters as the uninterrupted run
    child = _start(out, lid_tsv)
    assert child.wait(timeout=300) == 0, child.stderr.read()
    got, want = _params(out / "last.safetensors"), _params(reference / "last.safetensors")
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, SETTINGS["epochs"] + 1))


# -- a full disk --------------------------------------------------------------------------------
_LIMITED = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
    exec(sys.argv[2])
""")


def _with_file_size_limit(limit: int, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a child whose files cannot grow past ``limit`` bytes (RLIMIT_FSIZE; Python
    ignores SIGXFSZ, so a write past it fails with EFBIG, as on a full disk)."""
    return subprocess.run([sys.executable, "-c", _LIMITED, str(limit), code], capture_output=True,
                          text=True, timeout=120)


def _small_checkpoint(value: float) -> Checkpoint:
    return Checkpoint(tensors={"w": np.full((64, 64), value, np.float32)}, model={}, task={"name": "x"})


def test_checkpoint_write_on_a_full_disk(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", _small_checkpoint(1.0))
    before = path.read_bytes()
    code = textwrap.dedent(f"""
        import numpy as np
        from lstm_engine.checkpoint import Checkpoint, save_checkpoint
        from lstm_engine.errors import WriteError
        try:
            save_checkpoint({str(path)!r}, Checkpoint({{"w": np.full((64, 64), 2.0, np.float32)}}, {{}}, {{"name": "x"}}))
        except WriteError as e:
            print("WriteError:", e)
    """)
    done = _with_file_size_limit(4096, code)
    assert done.returncode == 0, done.stderr
    assert "WriteError: could not write" in done.stdout and "File too large" in done.stdout
    assert "previous file is unchanged" in done.stdout
    assert path.read_bytes() == before                                    # the previous file whole
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]     # no partial file


def test_run_on_a_full_disk_is_one_clear_line(tmp_path, lid_tsv):
    """The CLI: a checkpoint that does not fit is one line and exit status 1, not a traceback,
    and no file is left that looks like a good checkpoint."""
    out = tmp_path / "run"
    code = ("import sys; from lstm_engine.cli.main import main; sys.argv = ['lstm-engine'] + "
            + repr(["train", "--data", str(lid_tsv), "--out", str(out), "--backend", "numpy", "--epochs", "1",
                    "--hidden-size", "64", "--set", "embedding_dim=8"]) + "; main()")
    done = _with_file_size_limit(20_000, code)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "could not write" in done.stderr and "last.safetensors" in done.stderr and "File too large" in done.stderr
    assert not (out / "last.safetensors").exists() and not list(out.glob(".*.tmp"))


def test_corpus_cache_write_on_a_full_disk(locale_root, tmp_path):  # noqa: F811
    cache = tmp_path / "cache"
    gc.load_gettext_corpus_with_report(locale_root, min_strings=3, cache_dir=cache)
    [path] = cache.glob("gettext-corpus-*.json.gz")
    before = path.read_bytes()
    code = textwrap.dedent(f"""
        import logging
        logging.basicConfig(level=logging.WARNING)
        from lstm_engine.data import gettext_corpus as gc
        splits, report = gc.load_gettext_corpus_with_report({str(locale_root)!r}, min_strings=3,
                                                            cache_dir={str(cache)!r}, use_cache=False)
        gc._write_cache(gc.Path({str(path)!r}), "key", {{n: {{}} for n in gc.SPLITS}}, report)
        print("built", sum(len(s) for s in splits.values()))
    """)
    done = _with_file_size_limit(100, code)
    assert done.returncode == 0, done.stderr
    assert "built" in done.stdout                          # the corpus is still used
    assert "could not write the cache file" in done.stderr and "File too large" in done.stderr
    assert path.read_bytes() == before
    assert [p.name for p in cache.iterdir()] == [path.name]


# -- a damaged corpus cache -----------------------------------------------------------------------
def test_damaged_corpus_cache_is_rebuilt(locale_root, tmp_path):  # noqa: F811
    cache = tmp_path / "cache"
    built, _ = gc.load_gettext_corpus_with_report(locale_root, min_strings=3, cache_dir=cache)
    [path] = cache.glob("gettext-corpus-*.json.gz")
    good = path.read_bytes()
    payload = json.loads(gzip.decompress(good))
    rng = random.Random(0)
    damages = {f"cut at {n}": good[:n] for n in sorted({0, 1, 9, 10, len(good) // 2, len(good) - 8, len(good) - 1})}
    for k in range(12):
        # one flipped bit in the compressed data or the trailer: gzip's CRC-32 and length catch
        # it (the 10-byte header before it holds a time stamp and flags, not the contents)
        at = rng.randrange(10, len(good))
        damages[f"bit flip at {at}"] = good[:at] + bytes([good[at] ^ (1 << rng.randrange(8))]) + good[at + 1:]
    damages["valid gzip, wrong structure"] = gzip.compress(json.dumps({**payload, "splits": [1, 2]}).encode())
    damages["valid gzip, another key"] = gzip.compress(json.dumps({**payload, "key": "0" * 24}).encode())
    for what, data in damages.items():
        path.write_bytes(data)
        splits, report = gc.load_gettext_corpus_with_report(locale_root, min_strings=3, cache_dir=cache)
        assert not report.from_cache, what
        assert all(splits[n].inputs == built[n].inputs and splits[n].labels == built[n].labels for n in SPLITS), what
        rewritten = json.loads(gzip.decompress(path.read_bytes()))    # rebuilt and rewritten whole
        assert rewritten["splits"] == payload["splits"] and rewritten["key"] == payload["key"], what
    assert gc.load_gettext_corpus_with_report(locale_root, min_strings=3, cache_dir=cache)[1].from_cache


def test_write_error_is_an_oserror_and_a_project_error(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    with pytest.raises(WriteError, match="could not write") as info:
        save_checkpoint(target, _small_checkpoint(1.0))            # a folder is in the way
    assert isinstance(info.value, OSError)
    assert [p.name for p in tmp_path.iterdir()] == ["folder"] and not list(target.iterdir())
