"""``python -m cmadapter`` (and ``torchrun -m cmadapter train ...``)."""

import sys

from .cli import main

sys.exit(main())
