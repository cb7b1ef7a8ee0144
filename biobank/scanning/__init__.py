"""The scan pages. Scan text parsing is in ``biobank.scan_input`` and ``biobank.rack_csv``."""
