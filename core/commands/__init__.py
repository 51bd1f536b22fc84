"""Subcommands of the ``speechforge`` CLI, one module each."""
