"""Where dataset files live on disk and how their absence is reported."""

from __future__ import annotations

import os
from pathlib import Path

from divqat_tvm.errors import DataError

DATA_ENV = "DIVQAT_DATA"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """`data_dir` if given, else `$DIVQAT_DATA`, else `./data`."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path("data")


def find_folder(root: Path, folder: str, files: list[str]) -> Path | None:
    """The directory holding all `files`: `root/folder`, or `root` itself if the user pointed into it."""
    for cand in (root / folder, root):
        if all((cand / f).is_file() for f in files):
            return cand
    return None


def missing_error(dataset: str, root: Path, folder: str | None, files: list[str], source: str) -> DataError:
    """The error for absent files: which files, where we looked, where they come from."""
    where = root / folder if folder else root
    expected = ", ".join(f"{folder}/{f}" if folder else f for f in files)
    looked = f"{where.resolve()}" + (f" (and {root.resolve()})" if folder else "")
    return DataError(
        f"{dataset} files not found: expected {expected} under {root.resolve()}; searched {looked}.",
        f"Download them from {source} and unpack them into {root.resolve()} "
        f"(or pass --data-dir / set ${DATA_ENV}); this tool never downloads data.",
    )


def malformed_error(dataset: str, path: Path, why: str, source: str) -> DataError:
    """The error for a file that exists but is not in the expected format."""
    return DataError(
        f"{dataset} file {path.resolve()} is malformed: {why}.",
        f"Replace it with the original file from {source}.",
    )
