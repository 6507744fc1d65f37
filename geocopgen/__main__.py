"""``python -m geocopgen``: the command line, for environments without the console script."""

from geocopgen.cli import main

main()
