"""`python -m ccnet ...`: see ccnet/cli.py."""
import sys

from ccnet.cli import main

sys.exit(main())
