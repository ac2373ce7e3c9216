"""`python -m pygqa.bench [options]` is `pygqa bench [options]`."""

import sys

from pygqa.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
