"""Where the package's non-Python data lives: the firmware sources (`firmware/`) and the targets (`targets/`).

In a source tree (and an editable install) they are the repository's top-level folders. A wheel carries copies
under `divqat_tvm/_data/` (setup.py's build step puts them there), found through importlib.resources, so
`pip install divqat-tvm` gives a package that can build firmware without the repository.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from divqat_tvm.errors import DivqatError

DATA_FOLDERS = ("firmware", "targets")


def data_dir(name: str) -> Path:
    """The folder `name` (one of DATA_FOLDERS): the wheel's packaged copy, else the source tree's."""
    if name not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {name!r}; one of {DATA_FOLDERS}")
    packaged = Path(str(resources.files("divqat_tvm"))) / "_data" / name
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parent.parent / name
    if source.is_dir():
        return source
    raise DivqatError(
        f"the package's {name}/ folder is missing (looked in {packaged} and {source}).",
        "Reinstall divqat-tvm (pip install divqat-tvm, or scripts/setup.sh in a clone).",
    )
