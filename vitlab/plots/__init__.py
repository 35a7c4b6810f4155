"""Plotting: every function takes computed results (tensors) and returns a matplotlib Figure.

Nothing here computes an analysis; that lives in the pure-tensor modules.
"""

from .analysis import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .patches import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403
