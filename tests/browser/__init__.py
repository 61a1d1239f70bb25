"""Browser tests: the development Home Assistant's frontend in headless Chromium."""
