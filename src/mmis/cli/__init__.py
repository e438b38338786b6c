"""The `python -m mmis` command line."""
