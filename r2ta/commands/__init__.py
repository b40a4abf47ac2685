"""One module per ``r2ta`` subcommand group; each defines ``register(subparsers)``."""
