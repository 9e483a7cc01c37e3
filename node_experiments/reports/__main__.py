"""``python -m node_experiments.reports``: the ``node-report`` command without its installed script."""

import sys

from .cli import main

sys.exit(main())
