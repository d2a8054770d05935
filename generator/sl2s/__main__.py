"""`python -m sl2s ...`: the same command line as `sl2s ...`."""

from sl2s.cli import main

if __name__ == "__main__":
    main(prog_name="sl2s")  # as the console script: completion scripts name `sl2s`
