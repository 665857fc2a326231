"""The `lintas` command line (Typer + Rich)."""
