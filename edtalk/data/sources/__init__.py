"""Clip sources for the ingest stage: synthetic (default), hdtf, mead, folder."""
