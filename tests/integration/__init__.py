"""Tests of the Home Assistant integration itself, with pytest-homeassistant-custom-component."""
