"""`python -m redteam` runs the CLI."""

from redteam.cli import main

if __name__ == "__main__":
    main()
