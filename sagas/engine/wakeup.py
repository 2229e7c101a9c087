"""Wake idle workers when work becomes due, so pickup takes milliseconds, not a poll.

Best effort: polling is the safety net, so a failed wake-up is only logged.
"""

import logging

logger = logging.getLogger("sagas.engine")


def wake_workers() -> None:
    """Tell idle workers that a saga became due (called after the commit that made it so)."""
    # The engine's worker subscribes to this; until it exists, polling picks work up.
    logger.debug("wake workers")
