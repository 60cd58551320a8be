"""Numba's on-disk cache, keyed on every kernel source file a cached function depends on.

Numba keys a cached function (numba.core.caching) on two things: the index file
(`<module>.<function>-<line>.py<ver>.nbi`) holds a *source stamp*, the hash of the one
file the function is defined in (`_CacheLocator.get_source_stamp`), and is thrown away when
the stamp differs; each entry of the index is keyed on the signature, the target machine
and the function's own bytecode. Nothing covers what the function calls from other files,
although their machine code is linked into the cached object: edit `cpu_gemm.py` (the
product micro-kernel) and `cpu_kernels.forward_loop` keeps running the old product from its
cache (numba issue #1833). The same holds for functions inlined from `cpu_sync.py`.

`KernelFiles(package, files).jit(...)` is `numba.njit(cache=True, ...)` with each of Numba's
cache locators wrapped so that its source stamp also covers the content of every file in
`files`: editing any of them invalidates every cached function of the set at its next
load. The set is listed by hand (the kernel modules of one backend); a test checks that
every module of the package that imports Numba is in it.

The rest of Numba's caching is untouched (where the cache lives: `__pycache__` next to the
source, NUMBA_CACHE_DIR, the user-wide cache; the index format; concurrency). A locator
list set through NUMBA_CACHE_LOCATOR_CLASSES replaces Numba's own, and then these stamps
too. This module imports Numba: only kernel modules import it.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from numba import njit
from numba.core.caching import CompileResultCacheImpl, FunctionCache


def _stamped(locator_cls: type, files: "KernelFiles") -> type:
    """`locator_cls` with a source stamp that also covers the content of `files`."""

    def get_source_stamp(self):
        return (locator_cls.get_source_stamp(self), files.digest())

    return type(f"KernelFiles{locator_cls.__name__}", (locator_cls,),
                {"get_source_stamp": get_source_stamp})


class KernelFiles:
    """A set of source files of one package whose Numba functions are compiled together:
    `jit` caches a function under a stamp that covers all of them."""

    def __init__(self, package: str, files: tuple[str, ...]):
        self.package = package
        self.files = tuple(sorted(files))
        locators = [_stamped(cls, self) for cls in CompileResultCacheImpl._locator_classes]

        class _Impl(CompileResultCacheImpl):
            _locator_classes = locators

        class _Cache(FunctionCache):
            _impl_class = _Impl

        self.cache_class = _Cache

    def digest(self) -> str:
        """sha256 over the files' names and contents, read now (a file edited while the
        process runs changes it, as Numba's own stamp does)."""
        h = hashlib.sha256()
        root = resources.files(self.package)
        for name in self.files:
            h.update(name.encode() + b"\0")
            h.update(root.joinpath(name).read_bytes())
            h.update(b"\0")
        return h.hexdigest()

    def jit(self, **options):
        """A decorator: numba.njit(**options) with its on-disk cache keyed on these files."""
        if "cache" in options:
            raise TypeError("KernelFiles.jit always caches; do not pass cache=")

        def decorate(py_func):
            dispatcher = njit(**options)(py_func)
            # what njit(cache=True) does (Dispatcher.enable_caching), with our cache class
            dispatcher._cache = self.cache_class(dispatcher.py_func)
            return dispatcher
        return decorate

    def __repr__(self):
        return f"KernelFiles({self.package!r}, {self.files!r})"


#: The cpu backend's kernel modules: Numba compiles each into the others' callers.
CPU_KERNELS = KernelFiles(__package__, ("cpu_gemm.py", "cpu_kernels.py", "cpu_layers.py", "cpu_sync.py"))
