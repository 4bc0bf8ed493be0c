"""The package version, in one place (User-Agent, CLI --version, packaging)."""

__version__ = "0.1.0"
