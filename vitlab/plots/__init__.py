"""Plotting: every function takes computed results (tensors) and returns a matplotlib Figure.

Nothing here computes an analysis; that lives in the pure-tensor modules.
"""

from .analysis import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .clip import *  # noqa: F401,F403
from .diagrams import *  # noqa: F401,F403
from .experiments import *  # noqa: F401,F403
from .family import *  # noqa: F401,F403
from .mae import *  # noqa: F401,F403
from .patches import *  # noqa: F401,F403
from .reproductions import *  # noqa: F401,F403
from .training import *  # noqa: F401,F403
