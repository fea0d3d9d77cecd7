"""Small, dependency-free helpers to write run artefacts atomically.

Every writer goes through a temporary file in the destination's directory followed by
:func:`os.replace`, which is atomic on POSIX and Windows when source and destination are on the
same file system: a reader (or a crashed run) sees either the previous complete file or the new
complete file, never a truncated one.

JSON is written strictly (no ``NaN``/``Infinity`` tokens, which are not JSON): non-finite floats
become ``null``. :func:`to_jsonable` turns tensors, numpy values, paths, dataclasses, enums and
objects with a ``to_dict()`` method into plain JSON types, and anything else into its ``repr``.

Example:
    >>> import tempfile, pathlib
    >>> from critical.io import atomic_write_json
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_json(d / "a.json", {"x": 1.0, "nan": float("nan")})
    >>> import json
    >>> json.loads((d / "a.json").read_text())
    {'x': 1.0, 'nan': None}
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_write_text",
    "to_jsonable",
]

PathLike = str | os.PathLike


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp gives 0o600)


def atomic_write_bytes(path: PathLike, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory + ``os.replace``).

    The parent directory must exist. With ``fsync=True`` the data is flushed to disk before the
    rename, so a machine crash cannot leave an empty file behind the new name.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(
    path: PathLike, text: str, *, encoding: str = "utf-8", fsync: bool = True
) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode(encoding), fsync=fsync)


def atomic_write_json(
    path: PathLike, obj: Any, *, indent: int | None = 2, fsync: bool = True
) -> None:
    """Write ``to_jsonable(obj)`` as strict JSON to ``path`` atomically (keys kept in order)."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)
    atomic_write_text(path, text + "\n", fsync=fsync)


def atomic_write_csv(
    path: PathLike,
    rows: Iterable[Mapping[str, Any]],
    fieldnames: Sequence[str] | None = None,
    *,
    fsync: bool = True,
) -> None:
    """Write ``rows`` (mappings) as CSV with a header to ``path`` atomically.

    Without ``fieldnames`` the columns are the union of the rows' keys, in first-seen order.
    Missing values and ``None`` are written as empty cells; floats with ``repr`` precision.
    """
    rows = list(rows)
    if fieldnames is None:
        seen: dict[str, None] = {}
        for row in rows:
            for k in row:
                seen.setdefault(str(k), None)
        fieldnames = list(seen)
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(fieldnames), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({str(k): _csv_cell(v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue(), fsync=fsync)


def _csv_cell(v: Any) -> Any:
    v = to_jsonable(v)
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, allow_nan=False)
    return v


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON types (dict with str keys, list, str, int, float, bool, None).

    Non-finite floats become ``None``; one-element tensors and numpy scalars become Python
    numbers, larger ones lists; ``Path`` a string; dataclasses and objects with ``to_dict()`` a
    dict; enums their value; anything else its ``repr``.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict) and not isinstance(obj, type):
        try:
            return to_jsonable(to_dict())
        except Exception:  # noqa: BLE001 - fall through to the generic conversions
            pass
    # torch / numpy without importing them: both expose .tolist() (and .item() for scalars)
    tolist = getattr(obj, "tolist", None)
    if callable(tolist) and not isinstance(obj, type):
        try:
            return to_jsonable(tolist())
        except Exception:  # noqa: BLE001
            pass
    if isinstance(obj, (bytes, bytearray)):
        return obj.decode("utf-8", errors="replace")
    return repr(obj)
