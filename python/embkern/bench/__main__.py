"""``python -m embkern.bench``: see ``python -m embkern.bench --help``."""
import sys

from . import main

sys.exit(main())
