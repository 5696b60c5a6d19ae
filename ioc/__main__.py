"""``python -m ioc``: the same as the ``ioc`` command."""

import sys

from ioc.cli import main

sys.exit(main())
