"""R2tA Studio: Reason-Refine-then-Align for auditing EER diagrams.

The core library (this package, except :mod:`r2ta.ui`) never imports streamlit.
"""

__version__ = "0.1.0"
