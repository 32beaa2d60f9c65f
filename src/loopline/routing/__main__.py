"""``python -m loopline.routing``: run the traffic router (see :mod:`loopline.routing.server`)."""

from __future__ import annotations

import sys

from loopline.routing.server import main

if __name__ == "__main__":
    sys.exit(main())
