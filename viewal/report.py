"""The former name of :mod:`viewal.curves` (result rows, the results CSV, label-efficiency curves, terminal
tables): it re-exports that module so that code importing ``viewal.report`` still runs. Import
:mod:`viewal.curves`; ``viewal report`` writes the HTML page of a run's cycles (:mod:`viewal.cycle_report`)."""
from viewal.curves import *  # noqa: F403
from viewal.curves import COSTS, __all__  # noqa: F401
