"""Read-side queries (selectors), one module per capability, with bounded query counts.

Selectors read models and ask the visibility policy; they never change state and never
import services or interfaces (``tests/test_layers.py``).
"""
