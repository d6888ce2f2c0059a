"""SVHN cropped digits from the standard MATLAB files (http://ufldl.stanford.edu/housenumbers/).

`train_32x32.mat` / `test_32x32.mat` hold X (uint8 [32, 32, 3, N]) and y ([N, 1], digit 0 stored as 10).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from divqat_tvm.data.files import find_folder, malformed_error, missing_error

SVHN_SOURCE = "http://ufldl.stanford.edu/housenumbers/ (format 2, cropped digits)"
SVHN_FOLDER = "svhn"


def svhn_file(split: str) -> str:
    return "train_32x32.mat" if split == "train" else "test_32x32.mat"


def load_svhn(split: str, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N,3,32,32] images and int64 labels 0..9 of one SVHN split.

    Looks in `root/svhn/` and in `root` itself.

    Raises:
        DataError: the file is missing or malformed.
    """
    import scipy.io

    fname = svhn_file(split)
    where = find_folder(root, SVHN_FOLDER, [fname])
    if where is None:
        raise missing_error("svhn", root, SVHN_FOLDER, [fname], SVHN_SOURCE)
    path = where / fname
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises several types for non-MAT input
        raise malformed_error("svhn", path, f"not a MATLAB file ({type(e).__name__}: {e})", SVHN_SOURCE) from e
    if "X" not in mat or "y" not in mat:
        raise malformed_error(
            "svhn",
            path,
            f"expected variables X and y, found {sorted(k for k in mat if not k.startswith('__'))}",
            SVHN_SOURCE,
        )
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise malformed_error("svhn", path, f"X is {x.dtype} {x.shape}, expected uint8 [32, 32, 3, N]", SVHN_SOURCE)
    if len(y) != x.shape[3]:
        raise malformed_error("svhn", path, f"{x.shape[3]} images but {len(y)} labels", SVHN_SOURCE)
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise malformed_error("svhn", path, "labels outside 1..10", SVHN_SOURCE)
    y[y == 10] = 0
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
    return images, torch.from_numpy(y)
