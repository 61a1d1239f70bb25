"""Tests of the client library, without Home Assistant."""
