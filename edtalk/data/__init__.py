"""Data code: sources (synthetic, HDTF, MEAD, folder), cropping and feature extraction."""
