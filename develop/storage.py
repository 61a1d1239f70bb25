"""Create the storage of a fresh development instance with Home Assistant's own code.

`python -m develop.storage CONFIG_DIR TOKEN_FILE` writes what onboarding would: the demo user
(owner, administrator) with its password in the `homeassistant` auth provider (bcrypt, by the
provider itself), onboarding marked done, the three areas with a demo light in each; and a
long-lived access token for `script/develop` to call the APIs with, into TOKEN_FILE.

It runs in a process of its own, before `hass`, because a `HomeAssistant` object belongs to
its event loop and flushes its stores only when it stops, the way `hass --script auth` works.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta
import logging
import os
from pathlib import Path

from homeassistant import runner
from homeassistant.auth import auth_manager_from_config
from homeassistant.auth.const import GROUP_ID_ADMIN
from homeassistant.auth.models import TOKEN_TYPE_LONG_LIVED_ACCESS_TOKEN
from homeassistant.auth.providers.homeassistant import HassAuthProvider
from homeassistant.components.onboarding import (
    STORAGE_KEY as ONBOARDING_KEY,
    STORAGE_VERSION as ONBOARDING_VERSION,
    OnboardingStorage,
)
from homeassistant.components.onboarding.const import STEPS
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
    floor_registry as fr,
    label_registry as lr,
)

from . import AREAS, DISPLAY_NAME, PASSWORD, USERNAME

TOKEN_LIFETIME = timedelta(days=30)
CLIENT_NAME = "script/develop"


async def create_storage(config_dir: Path) -> str:
    """Write the storage files into `config_dir/.storage`; returns an access token."""
    hass = HomeAssistant(str(config_dir))
    await asyncio.gather(
        dr.async_load(hass), er.async_load(hass), fr.async_load(hass), lr.async_load(hass)
    )
    await ar.async_load(hass)
    hass.auth = await auth_manager_from_config(hass, [{"type": "homeassistant"}], [])
    provider = hass.auth.auth_providers[0]
    assert isinstance(provider, HassAuthProvider)
    await provider.async_initialize()

    # As onboarding's user step does (homeassistant/components/onboarding/views.py).
    user = await hass.auth.async_create_user(DISPLAY_NAME, group_ids=[GROUP_ID_ADMIN])
    await provider.async_add_auth(USERNAME, PASSWORD)
    credentials = await provider.async_get_or_create_credentials({"username": USERNAME})
    await hass.auth.async_link_user(user, credentials)
    refresh_token = await hass.auth.async_create_refresh_token(
        user,
        client_name=CLIENT_NAME,
        token_type=TOKEN_TYPE_LONG_LIVED_ACCESS_TOKEN,
        access_token_expiration=TOKEN_LIFETIME,
    )
    token = hass.auth.async_create_access_token(refresh_token)

    onboarding = OnboardingStorage(hass, ONBOARDING_VERSION, ONBOARDING_KEY, private=True)
    await onboarding.async_save({"done": list(STEPS)})

    areas = ar.async_get(hass)
    entities = er.async_get(hass)
    for name, entity_id in AREAS.items():
        area = areas.async_create(name)
        domain, object_id = entity_id.split(".")
        entry = entities.async_get_or_create(
            domain, "template", f"demo_{object_id}", suggested_object_id=object_id
        )
        entities.async_update_entity(entry.entity_id, area_id=area.id)

    # Stopping flushes every store that has a delayed write pending (auth, registries); the
    # instance never ran, so only a forced stop goes through its final-write stage.
    logging.getLogger("homeassistant.core").setLevel(logging.WARNING)
    await hass.async_stop(force=True)
    return token


def main() -> None:
    """Command line entry point: the token goes to TOKEN_FILE (mode 600), not to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config_dir", type=Path)
    parser.add_argument("token_file", type=Path)
    args = parser.parse_args()
    if (args.config_dir / ".storage").exists():
        parser.error(f"{args.config_dir} already has a .storage directory")
    asyncio.set_event_loop_policy(runner.HassEventLoopPolicy(False))
    token = asyncio.run(create_storage(args.config_dir.resolve()))
    fd = os.open(args.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token)


if __name__ == "__main__":
    main()
