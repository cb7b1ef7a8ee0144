"""Rendering of reports, exports and charts: pure code over data the selectors read."""
