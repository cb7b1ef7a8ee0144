from . import samples, storage, trial

__all__ = ["samples", "storage", "trial"]
