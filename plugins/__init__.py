"""Built-in plugins. Each subpackage is declared as an entry point of the group
``speechforge.plugins`` in pyproject.toml and loads exactly like a third-party plugin."""
