"""``python -m geocopgen``: the command line, for environments without the console script."""

from geocopgen.cli import main

if __name__ == "__main__":
    main()
