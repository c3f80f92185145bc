"""``python -m devlearn`` is the ``devlearn`` command."""

from devlearn.app.cli import main

main()
