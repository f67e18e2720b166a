"""The mailbox simulator: a real SMTP server that plays the recipient's side for a test domain.

The recipient's local part picks what happens (``bounce@``, ``defer-then-accept+x@``, ``open@`` …);
see ``Behaviour`` and the README table.
"""

from .behaviours import Behaviour, behaviour_of
from .followup import BROWSER_USER_AGENT
from .server import Simulator, parse_hostport, run_simulator
from .state import FollowupResult, ReceivedMessage, SimulatorState

__all__ = [
    "BROWSER_USER_AGENT",
    "Behaviour",
    "FollowupResult",
    "ReceivedMessage",
    "Simulator",
    "SimulatorState",
    "behaviour_of",
    "parse_hostport",
    "run_simulator",
]
