"""The Lintas wire protocol: envelopes, directory, request tokens, error codes.

A pure library (no web, no database); docs/protocol.md is its normative text.
"""
