"""The detection task's own subcommands: ``spinenas data`` (shapes, check, import) and ``spinenas evaluate``."""
