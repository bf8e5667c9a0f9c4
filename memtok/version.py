"""memtok's version, on its own so that the file format can stamp it without importing the package."""

__version__ = "0.1.0"
