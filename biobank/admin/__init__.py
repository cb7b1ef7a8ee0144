from . import samples, trial

__all__ = ["samples", "trial"]
