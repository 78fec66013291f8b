"""``python -m mfsample.cli``: the ``mfsample`` command."""

import sys

from .main import main

sys.exit(main())
