"""Lintas: a secure regional data exchange for Bali Process member agencies."""

__version__ = "0.1.0"
