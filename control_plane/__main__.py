"""``python -m control_plane`` — the same as the ``platform`` console script."""

import sys

from control_plane.cli import main

sys.exit(main())
