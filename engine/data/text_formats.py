"""Language-identification data that users bring: WiLI-2018, Tatoeba and plain TSV files.

Every loader returns ``Splits`` (train/validation/test ``Examples`` of text strings with
language labels). Where a source has no split of its own, the split is decided by a stable
hash (BLAKE2b, never Python's salted ``hash``) of a key of the example, so the same data
always splits the same way on every machine and run:

- WiLI-2018 has train and test; validation is carved out of train by a hash of the text.
- Tatoeba ``sentences.csv`` (``id<TAB>lang<TAB>text``) splits by a hash of the sentence id.
- TSV (``label<TAB>text[<TAB>split]``) uses the split column where given, else a hash of the text.

All files must be UTF-8; a bad byte is reported with the file and line number.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import ArgumentError, DataError, DataNotFoundError
from . import SPLITS, Examples, Splits

#: Default (train, validation, test) fractions where a source brings no split of its own.
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)

#: Share of WiLI's train part moved to validation.
WILI_VALIDATION_FRACTION = 0.1

#: Other spellings accepted in a TSV split column.
_SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation",
                  "val": "validation", "dev": "validation", "test": "test"}

_TATOEBA_NAME = re.compile(r"^sentences.*\.csv$", re.IGNORECASE)


# --- stable splitting -------------------------------------------------------------------

def stable_unit(key: str) -> float:
    """A number in [0, 1) that depends only on ``key`` (same on every machine and run)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def check_fractions(fractions) -> tuple[float, float, float]:
    """Validate (train, validation, test) fractions: three non-negative numbers summing to 1."""
    try:
        fractions = tuple(float(f) for f in fractions)
    except TypeError:
        raise ArgumentError(f"fractions must be three numbers (train, validation, test), got {fractions!r}") from None
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ArgumentError(f"fractions must be three non-negative numbers (train, validation, test) "
                            f"that sum to 1, got {fractions!r}")
    return fractions


def split_of(unit: float, fractions=DEFAULT_FRACTIONS) -> str:
    """The split that a stable unit number falls into."""
    train, validation, _ = fractions
    if unit < train:
        return "train"
    if unit < train + validation:
        return "validation"
    return "test"


def split_for_key(key: str, fractions=DEFAULT_FRACTIONS) -> str:
    return split_of(stable_unit(key), fractions)


def split_column(value: str, where: str) -> str:
    """The split a file's split column names (``dev``, ``val``... accepted); ``where`` (file
    and line) goes in the error."""
    split = _SPLIT_ALIASES.get(value.strip().lower())
    if split is None:
        raise DataError(f"{where}: split column is {value.strip()!r}, expected one of {', '.join(SPLITS)}")
    return split


# --- reading ----------------------------------------------------------------------------

def _require(path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataNotFoundError(f"no such file or directory: {path}")
    return path


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without the line ending) of a UTF-8 file; a bad byte is a ValueError
    with the line number, so the user can find and fix it."""
    if not path.is_file():
        raise DataError(f"{path} is not a file; expected a label<TAB>text TSV or a Tatoeba sentences.csv")
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}, line {number}: not valid UTF-8 ({e.reason} at byte {e.start}); "
                                f"the file must be UTF-8") from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            yield number, line.rstrip("\r\n")


def _new_splits() -> dict[str, tuple[list, list]]:
    return {name: ([], []) for name in SPLITS}


def _finish(parts: dict[str, tuple[list, list]], source: Path) -> Splits:
    if not any(inputs for inputs, _ in parts.values()):
        raise DataError(f"no examples in {source}")
    return {name: Examples(inputs, labels) for name, (inputs, labels) in parts.items()}


def _add(parts, split: str, label: str, text: str) -> None:
    inputs, labels = parts[split]
    inputs.append(text)
    labels.append(label)


# --- WiLI-2018 --------------------------------------------------------------------------

def _read_column(path: Path) -> list[str]:
    lines = [line for _, line in _lines(path)]
    # A file that ends with a newline yields no extra empty line from the iterator, but a
    # stray blank line at the very end (common after hand edits) should not count as data.
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _read_pair(folder: Path, part: str) -> list[tuple[str, str]]:
    x_path, y_path = folder / f"x_{part}.txt", folder / f"y_{part}.txt"
    for path in (x_path, y_path):
        if not path.is_file():
            raise DataNotFoundError(f"WiLI-2018 folder {folder} lacks {path.name}")
    texts, labels = _read_column(x_path), _read_column(y_path)
    if len(texts) != len(labels):
        raise DataError(f"WiLI-2018 files do not line up: {x_path} has {len(texts)} lines, "
                        f"{y_path} has {len(labels)}")
    for number, label in enumerate(labels, 1):
        # a label is one code (deu, zh-yue): whitespace inside is a malformed line, and a tab
        # would not survive an export to label<TAB>text
        if len(label.split()) > 1:
            raise DataError(f"{y_path}, line {number}: a label must be one code without spaces or "
                            f"tabs, got {label.strip()!r}")
    return [(label.strip(), text.strip()) for text, label in zip(texts, labels)
            if text.strip() and label.strip()]


def load_wili(folder) -> Splits:
    """WiLI-2018 (x_/y_ train/test .txt files, one paragraph or label per line). Labels are
    kept as given (WiLI codes such as ``deu``); validation is a stable 10% of train."""
    folder = _require(folder)
    parts = _new_splits()
    for label, text in _read_pair(folder, "train"):
        to_validation = stable_unit(text) < WILI_VALIDATION_FRACTION
        _add(parts, "validation" if to_validation else "train", label, text)
    for label, text in _read_pair(folder, "test"):
        _add(parts, "test", label, text)
    return _finish(parts, folder)


# --- Tatoeba ----------------------------------------------------------------------------

def load_tatoeba(path, fractions=DEFAULT_FRACTIONS) -> Splits:
    """Tatoeba ``sentences.csv`` (``id<TAB>lang<TAB>text``). Sentences without a language
    (``\\N``) are skipped; the split is a stable hash of the sentence id."""
    path = _require(path)
    fractions = check_fractions(fractions)
    parts = _new_splits()
    for number, line in _lines(path):
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        if len(fields) != 3:
            raise DataError(f"{path}, line {number}: expected 'id<TAB>lang<TAB>text' (Tatoeba sentences.csv)")
        sentence_id, lang, text = (field.strip() for field in fields)
        if lang in ("\\N", "") or not text:
            continue
        _add(parts, split_for_key(sentence_id, fractions), lang, text)
    return _finish(parts, path)


# --- TSV --------------------------------------------------------------------------------

def load_tsv(path, fractions=DEFAULT_FRACTIONS) -> Splits:
    """Lines ``label<TAB>text`` with an optional third column ``train``/``validation``/``test``.
    Blank lines and lines starting with ``#`` are skipped. Lines without a split column are
    split by a stable hash of the text."""
    path = _require(path)
    fractions = check_fractions(fractions)
    parts = _new_splits()
    for number, line in _lines(path):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t", 2)
        if len(fields) < 2:
            raise DataError(f"{path}, line {number}: no TAB; expected 'label<TAB>text' "
                            f"or 'label<TAB>text<TAB>split'")
        label, text = fields[0].strip(), fields[1].strip()
        if not label or not text:
            raise DataError(f"{path}, line {number}: empty label or text")
        if len(fields) == 3:
            split = split_column(fields[2], f"{path}, line {number}")
        else:
            split = split_for_key(text, fractions)
        _add(parts, split, label, text)
    return _finish(parts, path)


def export_tsv(splits: Splits, path) -> Path:
    """Write ``label<TAB>text<TAB>split`` lines, a file ``load_tsv`` reads back unchanged.
    Tabs and line breaks inside a text become spaces (they would break the format)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for name in SPLITS:
            examples = splits.get(name)
            if examples is None:
                continue
            f.writelines(f"{_one_line(label)}\t{_one_line(text)}\t{name}\n"
                         for text, label in zip(examples.inputs, examples.labels))
    return path


def _one_line(value) -> str:
    return " ".join(str(value).split())


# --- dispatch ---------------------------------------------------------------------------

def _looks_like_tatoeba(path: Path) -> bool:
    if _TATOEBA_NAME.match(path.name):
        return True
    for _, line in _lines(path):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        # A TSV with a split column also has three fields; its third field names a split.
        return (len(fields) == 3 and fields[0].strip().isdigit()
                and fields[2].strip().lower() not in _SPLIT_ALIASES)
    return False


def load_text_data(path) -> Splits:
    """Load a user's language-identification data, choosing the format from what ``path`` is:
    a folder with ``x_train.txt`` is WiLI-2018; ``sentences*.csv`` or a file whose first line
    is ``<integer id><TAB>lang<TAB>text`` is Tatoeba; anything else is TSV."""
    path = _require(path)
    if path.is_dir():
        if (path / "x_train.txt").is_file():
            return load_wili(path)
        raise DataError(f"{path} is a folder without x_train.txt; expected a WiLI-2018 folder, "
                        f"a Tatoeba sentences.csv or a label<TAB>text TSV file")
    if _looks_like_tatoeba(path):
        return load_tatoeba(path)
    return load_tsv(path)
