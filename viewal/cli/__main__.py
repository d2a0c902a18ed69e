"""``python -m viewal.cli COMMAND ...``: the ``viewal`` console script."""
import sys

from viewal.cli import main

sys.exit(main())
