"""A pytest plugin that puts probatio's voluptuous shim in place before anything imports
voluptuous, as Home Assistant 2026.9+ does (`homeassistant/__init__.py`).

Run as `pytest -p tests.probatio_shim ...`; `script/test` does so for the schema tests.
"""

from probatio.compat import install_as_voluptuous

install_as_voluptuous()
