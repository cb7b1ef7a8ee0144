from . import doses, printing, reports, samples, shipments, storage, trial

__all__ = ["doses", "printing", "reports", "samples", "shipments", "storage", "trial"]
