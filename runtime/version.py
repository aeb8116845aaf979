"""The toolkit version; written into every exported model's metadata."""

__version__ = "0.1.0"
