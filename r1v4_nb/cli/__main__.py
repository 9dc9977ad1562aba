"""`python -m r1v4_nb.cli`: the same as the `r1v4-nb` command."""

import sys

from . import main

sys.exit(main())
