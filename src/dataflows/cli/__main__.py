"""``python -m dataflows.cli``: the same as the ``dataflows`` script."""

from dataflows.cli import main

if __name__ == "__main__":
    main()
