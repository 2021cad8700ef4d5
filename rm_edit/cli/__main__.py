"""``python -m rm_edit.cli`` (also how ``accelerate launch -m rm_edit.cli ...`` runs it)."""

import sys

from rm_edit.cli import main

sys.exit(main())
