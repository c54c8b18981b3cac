"""The `pinbase` command line: the faces people use (serve, apply, demo, migrate)."""

from pinbase.cli.main import app, main

__all__ = ["app", "main"]
