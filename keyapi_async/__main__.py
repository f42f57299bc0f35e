"""``python -m keyapi_async``: the ``keyapi-async`` command line."""

import sys

from keyapi_async.cli import main

sys.exit(main())
