"""Debian packages as data: fetched with ``apt-get download`` into the project's cache and read
in Python, never installed.

A Debian/Ubuntu machine can fetch the translated documentation of thousands of packages (help
pages, man pages, language packs, fortunes) without changing anything on the system:
``apt-get download`` writes a ``.deb`` file into the current folder (root is not needed where the
package lists exist), and a ``.deb`` is an ``ar`` archive holding ``data.tar.*``, which the
stdlib ``tarfile`` reads. Nothing here runs ``dpkg``; the only change to the system this module
may make is ``apt-get update`` (the package lists), and only when it is asked to.

How it works, and why:

- ``Apt`` is the one place that runs apt (``apt-cache show`` for the candidate version, size
  and SHA-256 of each package, ``apt-get update``, ``apt-get download``), so that tests can
  put a fake in its place: CI never downloads.
- ``fetch_packages`` keeps each file as ``<cache>/debs/<package>_<version>.deb`` with a
  ``.sha256`` beside it: a later run with the same candidate version reuses it, a new version
  is downloaded (and the old one removed), and a file whose size or hash does not match is
  downloaded again. Downloads
  land in a private folder first and are checked against the package index's SHA-256 before
  they are renamed into place, so the cache never holds half a file. Without package lists
  the newest cached file of each package is used.
- When the lists are missing, ``apt-get update`` runs only if the caller allows it and the
  process is root, after saying so on stderr; otherwise, and when a download fails, the
  packages that could not be had are returned with the reason and the command that gets them.
- ``deb_files`` reads chosen members of a ``.deb`` (data.tar.xz, .gz, .bz2, uncompressed; .zst,
  which Ubuntu uses, with Python >= 3.14 or the ``zstandard`` package, a dependency below 3.14). Debian 12 builds every
  package this project reads with xz. Tutorial files are never read (they are reserved for
  independent evaluation): any member whose path mentions a tutorial is skipped.
"""

from __future__ import annotations

import hashlib
import io
import logging
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, MissingDependencyError

log = logging.getLogger(__name__)

#: Package names as Debian allows them (policy 5.6.1); anything else is refused before apt sees it.
_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")

#: Member paths containing this are never read: tutorial files are reserved for evaluation.
_RESERVED_MEMBER_MARK = "tutor"

#: The reason given for a package the package lists do not have (this release does not package it).
NOT_PACKAGED = "no such package in the package lists"

_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60


@dataclass
class PackageInfo:
    """A package's candidate version in the package lists (or in the cache)."""
    name: str
    version: str
    size: int | None = None
    sha256: str | None = None


@dataclass
class FetchedPackage:
    name: str
    version: str
    path: str
    size: int
    sha256: str
    from_cache: bool = True


@dataclass
class FetchReport:
    """What ``fetch_packages`` got, what it could not get and why, and what it did."""
    fetched: dict[str, FetchedPackage] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)   # package -> reason and remedy
    lists_refreshed: bool = False
    download_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


# --- apt --------------------------------------------------------------------------------

class Apt:
    """The system's apt: lookups, list refresh and downloads (a seam for tests)."""

    def unavailable_reason(self) -> str | None:
        if shutil.which("apt-get") is None or shutil.which("apt-cache") is None:
            return "apt-get is not installed (not a Debian/Ubuntu system)"
        return None

    def lookup(self, packages: Iterable[str]) -> dict[str, PackageInfo]:
        """Candidate version, size and SHA-256 of each package the lists know."""
        packages = list(packages)
        if not packages:
            return {}
        proc = subprocess.run(["apt-cache", "show", "--no-all-versions", *packages],
                              capture_output=True, text=True, check=False)
        found = {}
        for record in proc.stdout.split("\n\n"):
            fields = dict(re.findall(r"^([A-Za-z0-9-]+): ?(.*)$", record, re.MULTILINE))
            name, version = fields.get("Package"), fields.get("Version")
            if name in packages and version and name not in found:
                size = fields.get("Size")
                found[name] = PackageInfo(name, version, int(size) if size and size.isdigit() else None,
                                          fields.get("SHA256") or None)
        return found

    def lists_present(self) -> bool:
        """Whether any package index of the configured sources has been downloaded."""
        proc = subprocess.run(["apt-get", "indextargets", "--format", "$(FILENAME)", "Created-By: Packages"],
                              capture_output=True, text=True, check=False)
        for name in proc.stdout.split():
            folder, base = os.path.split(name)
            if os.path.isdir(folder) and any(entry.startswith(base) for entry in os.listdir(folder)):
                return True
        return False

    def update(self) -> None:
        proc = subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DataError(f"apt-get update failed: {_apt_errors(proc.stderr) or proc.stderr.strip()}")

    def download(self, infos: list[PackageInfo], dest: Path, progress: Callable[[int], None]) -> str:
        """``apt-get download`` every package at its version into ``dest``; calls ``progress``
        with the bytes in ``dest`` while it runs. Returns apt's error lines."""
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(["apt-get", "download", "-q", *(f"{i.name}={i.version}" for i in infos)],
                                    cwd=dest, stdout=out, stderr=err, text=True)
            try:
                while proc.poll() is None:
                    progress(sum(entry.stat().st_size for entry in os.scandir(dest) if entry.is_file()))
                    time.sleep(0.2)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            progress(sum(entry.stat().st_size for entry in os.scandir(dest) if entry.is_file()))
            err.seek(0)
            return _apt_errors(err.read())


def _apt_errors(stderr: str) -> str:
    # "W: Download is performed unsandboxed as root..." is apt saying that its _apt user cannot
    # write to the cache folder: expected, and not a problem.
    return "; ".join(line[3:].strip() for line in stderr.splitlines() if line.startswith("E: "))


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


# --- the cache --------------------------------------------------------------------------

def _cache_file(folder: Path, name: str, version: str) -> Path:
    return folder / f"{name}_{version.replace(':', '%3a')}.deb"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached(folder: Path, info: PackageInfo) -> FetchedPackage | None:
    """The cached file of ``info``'s version when it is whole, else None (and a damaged one is
    removed, so that it is downloaded again)."""
    path = _cache_file(folder, info.name, info.version)
    sidecar = path.with_name(path.name + ".sha256")
    if not path.is_file():
        return None
    try:
        recorded = sidecar.read_text().strip()
        size = path.stat().st_size
        ok = (info.size is None or size == info.size) and (info.sha256 is None or recorded == info.sha256)
        ok = ok and _sha256(path) == recorded
    except OSError:
        ok = False
    if not ok:
        log.warning("cached package %s is damaged or stale; fetching it again", path)
        path.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        return None
    return FetchedPackage(info.name, info.version, str(path), size, recorded)


def _newest_cached(folder: Path, name: str) -> PackageInfo | None:
    """The most recently fetched version of ``name`` in the cache (used without package lists)."""
    # Neither package names nor versions contain "_": "<name>_<version>.deb" splits one way.
    candidates = [p for p in folder.glob(f"{name}_*.deb") if p.name.count("_") == 1]
    if not candidates:
        return None
    newest = max(candidates, key=lambda p: p.stat().st_mtime)
    return PackageInfo(name, newest.name[len(name) + 1:-len(".deb")].replace("%3a", ":"))


def _store(folder: Path, downloaded: Path, info: PackageInfo) -> FetchedPackage:
    digest = _sha256(downloaded)
    if info.sha256 is not None and digest != info.sha256:
        raise DataError(f"{downloaded.name}: SHA-256 {digest} does not match the package index ({info.sha256})")
    path = _cache_file(folder, info.name, info.version)
    sidecar = path.with_name(path.name + ".sha256")
    tmp = sidecar.with_name(f".{sidecar.name}.tmp")
    tmp.write_text(digest + "\n")
    os.replace(downloaded, path)   # same file system: the incoming folder is inside the cache
    os.replace(tmp, sidecar)
    # Older versions of the package are of no more use: a monthly update would otherwise add
    # another copy every month.
    for old in folder.glob(f"{info.name}_*.deb"):
        if old != path and old.name.count("_") == 1:
            old.unlink(missing_ok=True)
            old.with_name(old.name + ".sha256").unlink(missing_ok=True)
    return FetchedPackage(info.name, info.version, str(path), path.stat().st_size, digest)


# --- fetching ---------------------------------------------------------------------------

def fetch_packages(packages: Iterable[str], cache_dir, *, apt: Apt | None = None, download: bool = True,
                   refresh_lists: bool = True, progress: bool | None = None,
                   resolved: dict[str, PackageInfo] | None = None, what: str = "") -> FetchReport:
    """Each package's ``.deb`` in ``<cache_dir>/debs``, from the cache or downloaded.

    ``download=False`` uses only the cache. ``refresh_lists`` lets a root process run
    ``apt-get update`` when the package lists are missing. ``progress`` shows a progress bar on
    stderr (None: only when stderr is a terminal). ``resolved`` are versions already looked up
    (``resolve_versions``). ``what`` names the packages on the progress bar. Never raises for a
    package that cannot be had: it is in ``missing`` with the reason."""
    packages = sorted(set(packages))
    for name in packages:
        if not _PACKAGE_NAME.match(name):
            raise DataError(f"not a Debian package name: {name!r}")
    apt = apt or Apt()
    folder = Path(cache_dir).expanduser() / "debs"
    report = FetchReport()
    if resolved is None:
        resolved = resolve_versions(packages, cache_dir, apt=apt, refresh_lists=refresh_lists and download,
                                    report=report)
    to_download = []
    for name in packages:
        info = resolved.get(name)
        if info is None:
            report.missing.setdefault(name, "not in the package lists and not in the cache")
            continue
        hit = _cached(folder, info)
        if hit is not None:
            report.fetched[name] = hit
        elif not download:
            report.missing[name] = "not in the cache (downloads are off)"
        else:
            to_download.append(info)
    if to_download:
        _download(to_download, folder, apt, report, progress, what)
    return report


def resolve_versions(packages: Iterable[str], cache_dir, *, apt: Apt | None = None, refresh_lists: bool = True,
                     report: FetchReport | None = None) -> dict[str, PackageInfo]:
    """The version of each package a fetch would use: the package lists' candidate, else (no
    lists, or a package they lack) the newest one in the cache. Refreshes missing lists when
    allowed and root. Reasons for packages it cannot resolve go to ``report.missing``."""
    packages = sorted(set(packages))
    apt = apt or Apt()
    report = report if report is not None else FetchReport()
    folder = Path(cache_dir).expanduser() / "debs"
    reason = apt.unavailable_reason()
    found = {} if reason else apt.lookup(packages)
    if not reason and not found and packages and not apt.lists_present():
        if refresh_lists and is_root():
            print("lstm-engine: the apt package lists are missing; running `apt-get update` "
                  "(it changes nothing but the lists) to fetch the corpus packages", file=sys.stderr)
            try:
                apt.update()
                report.lists_refreshed = True
                found = apt.lookup(packages)
            except DataError as e:
                reason = str(e)
        else:
            reason = ("the apt package lists are missing (run `apt-get update` as root"
                      + (")" if is_root() else "; this process is not root)"))
    resolved = {}
    for name in packages:
        info = found.get(name) or (_newest_cached(folder, name) if folder.is_dir() else None)
        if info is not None:
            resolved[name] = info
        else:
            report.missing[name] = reason or f"{NOT_PACKAGED} of this system"
    return resolved


def _download(infos: list[PackageInfo], folder: Path, apt: Apt, report: FetchReport, progress, what: str) -> None:
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    total = sum(info.size or 0 for info in infos)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".incoming-", dir=folder) as incoming, \
            tqdm(total=total or None, unit="B", unit_scale=True, file=sys.stderr,
                 disable=None if progress is None else not progress,
                 desc=f"downloading {what or 'packages'} ({len(infos)})") as bar:
        def show(done: int) -> None:
            bar.update(max(0, done - bar.n))
        try:
            errors = apt.download(infos, Path(incoming), show)
        except OSError as e:
            errors = str(e)
        for info in infos:
            files = list(Path(incoming).glob(f"{info.name}_*.deb"))
            if not files:
                report.missing[info.name] = f"download failed ({errors or 'apt-get gave no file'})"
                continue
            try:
                stored = _store(folder, files[0], info)
            except (DataError, OSError) as e:
                report.missing[info.name] = f"download failed ({e})"
                continue
            stored.from_cache = False
            report.fetched[info.name] = stored
    report.download_seconds += time.perf_counter() - start


# --- reading a .deb ---------------------------------------------------------------------

def _ar_members(blob: bytes, path) -> Iterator[tuple[str, memoryview]]:
    """(name, data) of each member of an ``ar`` archive (the System V/GNU format dpkg writes)."""
    if blob[:len(_AR_MAGIC)] != _AR_MAGIC:
        raise DataError(f"{path}: not a .deb file (no ar archive header)")
    view, pos = memoryview(blob), len(_AR_MAGIC)
    while pos + _AR_HEADER <= len(blob):
        header = blob[pos:pos + _AR_HEADER]
        if header[58:60] != b"`\n":
            raise DataError(f"{path}: damaged ar member header at byte {pos}")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip() or 0)
        start = pos + _AR_HEADER
        if start + size > len(blob):
            raise DataError(f"{path}: truncated (member {name!r} needs {size} bytes)")
        yield name, view[start:start + size]
        pos = start + size + (size & 1)   # members are 2-byte aligned


def _open_data_tar(name: str, data: memoryview, path) -> tarfile.TarFile:
    raw = io.BytesIO(data)
    if name.endswith(".zst"):
        try:
            from compression import zstd          # Python >= 3.14
            stream = zstd.ZstdFile(raw)
        except ImportError:
            try:
                import zstandard
            except ImportError:
                raise MissingDependencyError(
                    f"{path} is compressed with zstd (as Ubuntu packages are); reading it needs Python "
                    f">= 3.14 or the zstandard package (pip install zstandard)") from None
            stream = zstandard.ZstdDecompressor().stream_reader(raw)
        return tarfile.open(fileobj=stream, mode="r|")
    return tarfile.open(fileobj=raw, mode="r|*")   # xz, gz, bz2 or none, by its magic bytes


def deb_files(path, select: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """(path, contents) of the regular files of a ``.deb`` whose path (``usr/share/...``, no
    leading ``./``) ``select`` accepts, in archive order. Tutorial files are always skipped.
    A damaged file raises DataError naming it."""
    path = Path(path)
    blob = path.read_bytes()
    try:
        for name, data in _ar_members(blob, path):
            if not name.startswith("data.tar"):
                continue
            with _open_data_tar(name, data, path) as tar:
                for member in tar:
                    member_path = member.name.removeprefix("./")
                    if (not member.isfile() or _RESERVED_MEMBER_MARK in member_path.lower()
                            or not select(member_path)):
                        continue
                    yield member_path, tar.extractfile(member).read()
            return
    except DataError:
        raise
    except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read its data archive ({type(e).__name__}: {e})") from e
    raise DataError(f"{path}: no data.tar member")
