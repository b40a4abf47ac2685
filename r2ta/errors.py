"""The library's exceptions. Each message says what is wrong and, where it can, what to do.

The CLI turns :class:`R2taError` into a clean exit with the message; pages catch
the specific subclasses. Code that is not handling bad *input* should let other
exceptions propagate: they are bugs.
"""


class R2taError(Exception):
    """Base of every error R2tA raises on purpose."""


class DiagramError(R2taError):
    """A diagram (or a file that should hold one) is malformed, oversized or unreadable."""


class ImportFormatError(DiagramError):
    """A foreign diagram file (ERDPlus, PlantUML, Mermaid) cannot be converted."""


class DatasetError(R2taError):
    """A dataset or base-schema file is missing, malformed or inconsistent."""


class RenderError(R2taError):
    """A diagram could not be rendered (for example the graphviz ``dot`` binary is missing)."""
