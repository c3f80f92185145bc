"""``python -m devlearn`` is the ``devlearn`` command."""

from devlearn.cli import main

main()
