"""`python -m ccnet ...`: see ccnet/cli/__init__.py."""
import sys

from ccnet.cli import main

sys.exit(main())
