from . import printing, release, reports, samples, storage, trial

__all__ = ["printing", "release", "reports", "samples", "storage", "trial"]
