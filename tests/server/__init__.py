"""Tests of the local Layercode-compatible server."""
