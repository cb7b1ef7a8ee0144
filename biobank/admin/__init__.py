from . import printing, release, reports, samples, shipments, storage, trial

__all__ = ["printing", "release", "reports", "samples", "shipments", "storage", "trial"]
