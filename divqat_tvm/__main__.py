"""`python -m divqat_tvm ARGS`: the same CLI as the `divqat-tvm` script (useful from a source tree)."""

import sys

from divqat_tvm.cli import main

sys.exit(main())
