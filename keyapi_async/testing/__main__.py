"""``python -m keyapi_async.testing``: run the fake KeyAPI server."""

import sys

from keyapi_async.testing.cli import main

sys.exit(main())
