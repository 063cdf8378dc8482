"""The command line's commands, one module each; `cli.py` registers them on one typer app."""
