"""One module per ``r2ta`` subcommand group; each defines ``register(subparsers)``."""

# The weights a local model generates in (--dtype of reason, eval and loop). BackendConfig.dtype takes the
# same names; it is not imported from r2ta.backends so that building the parser stays light (a test checks both).
DTYPES = ("auto", "float32", "bfloat16", "float16")
