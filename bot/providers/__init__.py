"""Target-system providers, one module per kind: `<kind>_<name>.py`."""
