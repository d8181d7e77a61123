"""`python -m ccnet ...`: see ccnet/cli/__init__.py."""
import sys

from ccnet.inference.allocator import use_allocator_from_environment

use_allocator_from_environment()  # before any other thread allocates: see ccnet/inference/allocator.py
from ccnet.cli import main  # noqa: E402

sys.exit(main())
