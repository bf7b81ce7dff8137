"""`python -m gatedrnn` is the `gatedrnn` command."""

import sys

from .cli import main

sys.exit(main())
