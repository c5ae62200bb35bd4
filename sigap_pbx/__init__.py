"""Sigap 112: emergency call handling on Asterisk."""

__version__ = "0.1.0"
