"""A stand-in for a text-generation-inference (TGI 3.x) server, for tests (see server.py).

    async with TgiStandIn(loaded) as tgi:      # 127.0.0.1, a free port; TGI_URL = tgi.url
        tgi.faults.drop_after_tokens = 3       # the next stream dies after three tokens
        ...
        assert not tgi.fetch_attempts          # nobody made it fetch an image URL
"""

from .server import Faults, Received, TgiStandIn
from .validation import Limits

__all__ = ["Faults", "Limits", "Received", "TgiStandIn"]
