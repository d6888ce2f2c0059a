"""Packaging hook: the wheel carries the repository's top-level `firmware/` and `targets/` folders as package
data (under `divqat_tvm/_data/`), so an installed package builds firmware without the repository.

Everything else about the package is in pyproject.toml; this file only adds that copy step to build_py.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
DATA_FOLDERS = ("firmware", "targets")  # as divqat_tvm.resources.DATA_FOLDERS


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the source tree's folders directly
            return
        for name in DATA_FOLDERS:
            dst = Path(self.build_lib) / "divqat_tvm" / "_data" / name
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(HERE / name, dst, ignore=shutil.ignore_patterns("__pycache__", "*.o", "*.su"))


setup(cmdclass={"build_py": BuildPyWithData})
