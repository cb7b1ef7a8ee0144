from . import printing, release, samples, storage, trial

__all__ = ["printing", "release", "samples", "storage", "trial"]
