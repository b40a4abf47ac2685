"""One module per ``r2ta`` subcommand group; each defines ``register(subparsers)``."""

# The weights a local model generates in (--dtype of reason, eval and loop). BackendConfig.dtype takes the
# same names; it is not imported from r2ta.backends so that building the parser stays light (a test checks both).
DTYPES = ("auto", "float32", "bfloat16", "float16")


def add_budget_per_construct(p) -> None:  # noqa: ANN001 (an argparse parser)
    """``--tokens-per-construct`` of reason and eval (:func:`r2ta.pipeline.answer_budget`)."""
    p.add_argument("--tokens-per-construct", type=int, default=0, metavar="N",
                   help="give each answer N more tokens per construct of its diagram (entity, relationship, "
                        "specialization, category: a step of a walk) on top of --max-new-tokens, so a large diagram's "
                        "walk is not cut where a small one's fits; e.g. --max-new-tokens 320 --tokens-per-construct 20 "
                        "(default: 0, one budget for all)")


def check_budget_per_construct(args) -> None:  # noqa: ANN001 (argparse's namespace)
    if args.tokens_per_construct < 0:
        from r2ta.errors import R2taError

        raise R2taError("--tokens-per-construct must be 0 (one budget for all) or more")
