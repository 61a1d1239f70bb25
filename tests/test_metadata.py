"""The integration's metadata against the rules Home Assistant and HACS apply to it.

hassfest (home-assistant/core `script/hassfest/`) and HACS's validator (hacs/integration
`custom_components/hacs/utils/validate.py`) are not installable packages, so their rules are
restated here with the file each comes from. Wherever the installed Home Assistant holds the
real check or value, that is used instead: its loader (which blocks a custom integration with
a bad version and resolves dependencies), `loader.Manifest`, `Platform`, the core integrations
on disk, the selector and service validators, `COUNTRIES`, `DISCOVERY_INTEGRATIONS`.

Translation keys are found by parsing the code (flow steps, errors and aborts, entity
translation keys, exceptions, issues, actions), never from a list kept here: adding a key to
the code without its translation fails a test.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
import functools
import importlib
import inspect
import json
from pathlib import Path
import re
import string
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from awesomeversion import AwesomeVersion, AwesomeVersionStrategy
from homeassistant import loader
import homeassistant.components
from homeassistant.config_entries import ConfigFlow, OptionsFlow
from homeassistant.const import CONF_SELECTOR, Platform, __version__ as HA_VERSION
from homeassistant.core import HomeAssistant
from homeassistant.generated.countries import COUNTRIES
from homeassistant.helpers import config_validation as cv, selector, service
from homeassistant.helpers.icon import convert_shorthand_service_icon
from homeassistant.requirements import DISCOVERY_INTEGRATIONS
from homeassistant.util.yaml import load_yaml_dict
import pytest
import voluptuous as vol

# Imported before Home Assistant's loader looks, so that `custom_components` is this
# repository's package and not the test plugin's empty one.
import custom_components.layercode

ROOT = Path(__file__).parents[1]
CUSTOM_COMPONENTS = ROOT / "custom_components"
INTEGRATION = CUSTOM_COMPONENTS / "layercode"
PACKAGE = custom_components.layercode.__name__
CORE_COMPONENTS = Path(next(iter(homeassistant.components.__path__)))


def _json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


MANIFEST = _json(INTEGRATION / "manifest.json")
HACS = _json(ROOT / "hacs.json")
STRINGS = _json(INTEGRATION / "strings.json")
ENGLISH = _json(INTEGRATION / "translations" / "en.json")
ICONS = _json(INTEGRATION / "icons.json")
SERVICES: dict[str, Any] = load_yaml_dict(str(INTEGRATION / "services.yaml"))
DOMAIN: str = MANIFEST["domain"]

PLATFORMS = {platform.value for platform in Platform}
VERSION_STRATEGIES = [
    AwesomeVersionStrategy.CALVER,
    AwesomeVersionStrategy.SEMVER,
    AwesomeVersionStrategy.SIMPLEVER,
    AwesomeVersionStrategy.BUILDVER,
    AwesomeVersionStrategy.PEP440,
]
"""What `loader.Integration.resolve_from_root` and hassfest's `verify_version` accept."""


def _core_integrations() -> set[str]:
    return {path.parent.name for path in CORE_COMPONENTS.glob("*/manifest.json")}


# Reading the code.


@dataclass(frozen=True)
class Source:
    """One module of the integration: its syntax tree and, when needed, the module itself."""

    path: Path
    tree: ast.Module

    @property
    def name(self) -> str:
        return self.path.relative_to(INTEGRATION).with_suffix("").as_posix().replace("/", ".")

    @functools.cached_property
    def module(self) -> types.ModuleType:
        name = self.name.removesuffix("__init__").rstrip(".")
        return importlib.import_module(f"{PACKAGE}.{name}" if name else PACKAGE)

    def where(self, node: ast.AST) -> str:
        return f"{self.path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"

    def evaluate(self, node: ast.expr) -> Any:
        """A constant, or a name or attribute of the module (e.g. a CONF_ constant)."""
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if not hasattr(self.module, node.id):
                raise AssertionError(f"{self.where(node)}: cannot resolve {node.id}")
            return getattr(self.module, node.id)
        if isinstance(node, ast.Attribute):
            return getattr(self.evaluate(node.value), node.attr)
        raise AssertionError(f"{self.where(node)}: cannot resolve {ast.unparse(node)}")

    def text(self, node: ast.expr) -> str:
        value = self.evaluate(node)
        assert isinstance(value, str), f"{self.where(node)}: {value!r} is not text"
        return value


@functools.cache
def _sources() -> tuple[Source, ...]:
    return tuple(
        Source(path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for path in sorted(INTEGRATION.rglob("*.py"))
    )


def _source(name: str) -> Source:
    return next(source for source in _sources() if source.name == name)


def _calls(tree: ast.AST) -> Iterator[tuple[ast.Call, str]]:
    """Every call with the name it calls (`self.async_abort(...)` -> `async_abort`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            yield node, name


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _dict_keys(source: Source, node: ast.expr | None) -> set[str] | None:
    """The keys of a dict literal; None when the dict is not written out here."""
    if not isinstance(node, ast.Dict) or any(key is None for key in node.keys):
        return None
    return {source.text(key) for key in node.keys if key is not None}


def _placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _lookup(tree: Mapping[str, Any], *path: str) -> Any:
    node: Any = tree
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


# manifest.json: hassfest's manifest.py, dependencies.py, config_schema.py; Home Assistant's loader.


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the type `loader.Manifest` declares for its key."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return value in args
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(_matches(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items()
        )
    return type(value) is hint


def test_manifest_keys_are_home_assistants_and_typed() -> None:
    """hassfest rejects unknown keys; the loader's `Manifest` lists the known ones."""
    hints = get_type_hints(loader.Manifest)
    known = hints.keys() - {"is_built_in", "overwrites_built_in"}  # set by the loader itself
    assert MANIFEST.keys() - known == set()
    wrong = {key: value for key, value in MANIFEST.items() if not _matches(value, hints[key])}
    assert wrong == {}


def test_manifest_has_what_custom_integrations_need() -> None:
    """Required by hassfest (domain, name, codeowners, documentation, version) and HACS."""
    assert MANIFEST["domain"] == INTEGRATION.name
    assert not (CORE_COMPONENTS / DOMAIN).exists(), "the domain collides with a core integration"
    assert MANIFEST["name"].strip()
    assert all(owner.startswith("@") for owner in MANIFEST["codeowners"])
    for key in ("documentation", "issue_tracker"):
        url = cv.url(MANIFEST[key])
        assert url.startswith("https://"), key
    assert not MANIFEST["documentation"].startswith("https://www.home-assistant.io/integrations")
    AwesomeVersion(MANIFEST["version"], ensure_strategy=VERSION_STRATEGIES)
    assert all(re.fullmatch(r"[\w.\[\],-]+==[\w.+-]+", r) for r in MANIFEST["requirements"])


def test_manifest_keys_sorted() -> None:
    """hassfest: "domain, name, then alphabetical order"."""
    keys = list(MANIFEST)
    assert keys == sorted(
        keys, key=lambda key: {"domain": ".domain", "name": ".name"}.get(key, key)
    )


def test_manifest_integration_type() -> None:
    """Home Assistant's manifest docs: every integration must state its type."""
    allowed = set(get_args(get_type_hints(loader.Manifest)["integration_type"])) - {"virtual"}
    assert MANIFEST.get("integration_type") in allowed


def test_manifest_iot_class() -> None:
    """One of the classes core integrations use (hassfest's SUPPORTED_IOT_CLASSES)."""
    generated = Path(inspect.getfile(loader)).parent / "generated" / "integrations.json"

    def iot_classes(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("iot_class"), str):
                yield node["iot_class"]
            for value in node.values():
                yield from iot_classes(value)

    assert MANIFEST["iot_class"] in set(iot_classes(_json(generated)))


def test_manifest_dependencies_exist() -> None:
    """Each is a core integration of the installed Home Assistant or one in this repository."""
    dependencies = MANIFEST.get("dependencies", [])
    after = MANIFEST.get("after_dependencies", [])
    ours = {path.parent.name for path in CUSTOM_COMPONENTS.glob("*/manifest.json")} - {DOMAIN}
    assert set(dependencies + after) - _core_integrations() - ours == set()
    assert set(dependencies) & set(after) == set()
    assert len(set(dependencies)) == len(dependencies)


# hassfest's dependencies.py: integrations any integration may import without declaring them.
_ALWAYS_ALLOWED = {
    "alert", "automation", "conversation", "default_config", "device_automation", "frontend",
    "group", "homeassistant", "input_boolean", "input_button", "input_datetime", "input_number",
    "input_select", "input_text", "media_source", "onboarding", "panel_custom",
    "persistent_notification", "person", "script", "shopping_list", "sun", "system_health",
    "system_log", "timer", "webhook", "websocket_api", "zone", "mjpeg", "stream",
}  # fmt: skip


class _Imports(ast.NodeVisitor):
    """The `homeassistant.components.X` a module imports, outside `if TYPE_CHECKING:`."""

    def __init__(self) -> None:
        self.found: dict[str, int] = {}

    def visit_If(self, node: ast.If) -> None:
        if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if module.startswith("homeassistant.components."):
            self.found.setdefault(module.split(".")[2], node.lineno)
        elif module == "homeassistant.components":
            for alias in node.names:
                self.found.setdefault(alias.name, node.lineno)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.startswith("homeassistant.components."):
                self.found.setdefault(alias.name.split(".")[2], node.lineno)


def test_imported_integrations_are_dependencies() -> None:
    """hassfest: "Using component X but it's not in 'dependencies' or 'after_dependencies'"."""
    allowed = (
        PLATFORMS
        | _ALWAYS_ALLOWED
        | {DOMAIN}
        | set(MANIFEST.get("dependencies", []))
        | set(MANIFEST.get("after_dependencies", []))
        | {path.stem for path in INTEGRATION.glob("*.py")}  # a platform of this integration
    )
    for domain, keys in DISCOVERY_INTEGRATIONS.items():
        if any(key in MANIFEST for key in keys):
            allowed.add(domain)
    undeclared = []
    for source in _sources():
        imports = _Imports()
        imports.visit(source.tree)
        undeclared += [
            f"{source.path.name}:{line} {domain}"
            for domain, line in imports.found.items()
            if domain not in allowed
        ]
    assert undeclared == []


def test_config_flow_and_yaml_setup_declared() -> None:
    """hassfest's config_flow.py and config_schema.py."""
    assert MANIFEST.get("config_flow", False) == (INTEGRATION / "config_flow.py").is_file()
    init = _source("__init__").tree
    has_setup = any(
        isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef)
        and node.name in ("async_setup", "setup")
        for node in init.body
    )
    has_schema = any(
        isinstance(node, ast.Assign)
        and any(getattr(target, "id", None) == "CONFIG_SCHEMA" for target in node.targets)
        for node in init.body
    )
    assert has_schema or not has_setup, "async_setup needs a CONFIG_SCHEMA"


async def test_home_assistant_loads_the_integration(
    hass: HomeAssistant, enable_custom_integrations: None
) -> None:
    """The loader refuses a custom integration without a valid version, and resolves every
    dependency (recursively) among the integrations it can find."""
    integration = await loader.async_get_integration(hass, DOMAIN)
    assert integration.pkg_path == PACKAGE
    assert integration.version == AwesomeVersion(MANIFEST["version"])
    dependencies = await integration.resolve_dependencies()
    assert dependencies is not None
    assert set(MANIFEST.get("dependencies", [])) <= dependencies


# hacs.json and HACS's manifest rules (hacs/integration custom_components/hacs/utils/validate.py).


def _country(value: Any) -> list[str]:
    countries = [value] if isinstance(value, str) else value
    if not isinstance(countries, list) or any(
        not isinstance(c, str) or c.upper() not in COUNTRIES for c in countries
    ):
        raise vol.Invalid(f"{value!r} is not a country code or a list of them")
    return [c.upper() for c in countries]


HACS_MANIFEST_JSON_SCHEMA = vol.Schema(
    {
        vol.Optional("content_in_root"): bool,
        vol.Optional("country"): _country,
        vol.Optional("filename"): str,
        vol.Optional("hacs"): str,
        vol.Optional("hide_default_branch"): bool,
        vol.Optional("homeassistant"): str,
        vol.Optional("persistent_directory"): str,
        vol.Optional("render_readme"): bool,
        vol.Optional("zip_release"): bool,
        vol.Required("name"): str,
    },
    extra=vol.PREVENT_EXTRA,
)

HACS_INTEGRATION_MANIFEST_SCHEMA = vol.Schema(
    {
        vol.Required("codeowners"): list,
        vol.Required("documentation"): cv.url,
        vol.Required("domain"): str,
        vol.Required("issue_tracker"): cv.url,
        vol.Required("name"): str,
        vol.Required("version"): vol.Coerce(AwesomeVersion),
    },
    extra=vol.ALLOW_EXTRA,
)


def test_hacs_json() -> None:
    HACS_MANIFEST_JSON_SCHEMA(HACS)
    assert HACS.get("filename") or not HACS.get("zip_release"), "zip_release needs filename"
    if "hacs" in HACS:
        AwesomeVersion(HACS["hacs"], ensure_strategy=VERSION_STRATEGIES)


def test_hacs_minimum_home_assistant_is_the_oldest_tested() -> None:
    """HACS offers the integration from `homeassistant` on: the oldest version tested here."""
    minimum = AwesomeVersion(HACS["homeassistant"], ensure_strategy=[AwesomeVersionStrategy.CALVER])
    tested = sorted(
        (path.stem.removeprefix("ha-") for path in (ROOT / "requirements").glob("ha-*.txt")),
        key=AwesomeVersion,
    )
    assert f"{minimum.major}.{minimum.minor}" == tested[0]
    assert minimum <= AwesomeVersion(HA_VERSION)


def test_hacs_integration_manifest_and_layout() -> None:
    HACS_INTEGRATION_MANIFEST_SCHEMA(MANIFEST)
    assert not HACS.get("content_in_root", False)
    # HACS installs the first directory under custom_components/: it must be the only one.
    directories = [p.name for p in CUSTOM_COMPONENTS.iterdir() if p.is_dir()]
    assert [d for d in directories if d != "__pycache__"] == [DOMAIN]
    assert (ROOT / "README.md").is_file() or (ROOT / "info.md").is_file()


# strings.json and translations/en.json: hassfest's translations.py.

_TRANSLATION_KEY = re.compile(r"^(?!.+[_-]{2})(?![_-])[a-z0-9-_]+(?<![_-])$")


def _translation_key(value: Any) -> str:
    if not isinstance(value, str) or not _TRANSLATION_KEY.match(value):
        raise vol.Invalid(f"invalid translation key {value!r}: [a-z0-9-_]+, no leading _ or -")
    return value


def _translation(value: Any) -> str:
    text: str = cv.string_with_no_html(value)
    if re.search(r"'{\w+}'", text):
        raise vol.Invalid("placeholder inside single quotes")
    if re.search(r"(.+\[%)|(%\].+)", text):
        raise vol.Invalid("combined translations")
    if text != text.strip():
        raise vol.Invalid("leading or trailing spaces")
    return text


def _data_descriptions_have_data(value: dict[str, Any]) -> dict[str, Any]:
    for step_id, step in value["step"].items():
        if extra := set(step.get("data_description", {})) - set(step.get("data", {})):
            raise vol.Invalid(f"step {step_id}: data_description without data: {sorted(extra)}")
    return value


_TEXTS = {str: _translation}
_DATA_ENTRY = vol.All(
    vol.Schema(
        {
            vol.Optional("flow_title"): _translation,
            vol.Optional("title"): _translation,
            vol.Required("step"): {
                str: {
                    vol.Optional("title"): _translation,
                    vol.Optional("description"): _translation,
                    vol.Optional("data"): _TEXTS,
                    vol.Optional("data_description"): _TEXTS,
                    vol.Optional("menu_options"): _TEXTS,
                    vol.Optional("submit"): _translation,
                    vol.Optional("sections"): {
                        str: {
                            vol.Optional("data"): _TEXTS,
                            vol.Optional("description"): _translation,
                            vol.Optional("name"): _translation,
                        }
                    },
                }
            },
            vol.Optional("error"): _TEXTS,
            vol.Optional("abort"): _TEXTS,
            vol.Optional("progress"): _TEXTS,
            vol.Optional("create_entry"): _TEXTS,
        }
    ),
    _data_descriptions_have_data,
)
_STATES = cv.schema_with_slug_keys(_translation, slug_validator=_translation_key)
STRINGS_SCHEMA = vol.Schema(
    {
        vol.Optional("title"): _translation,
        vol.Optional("config"): _DATA_ENTRY,
        vol.Optional("options"): _DATA_ENTRY,
        vol.Optional("selector"): cv.schema_with_slug_keys(
            {"options": _STATES}, slug_validator=vol.Any("_", cv.slug)
        ),
        vol.Optional("issues"): {
            str: vol.All(
                cv.has_at_least_one_key("description", "fix_flow"),
                vol.Schema(
                    {
                        vol.Required("title"): _translation,
                        vol.Exclusive("description", "fixable"): _translation,
                        vol.Exclusive("fix_flow", "fixable"): _DATA_ENTRY,
                    }
                ),
            )
        },
        vol.Optional("device"): cv.schema_with_slug_keys(
            {vol.Optional("name"): _translation}, slug_validator=_translation_key
        ),
        vol.Optional("entity"): cv.schema_with_slug_keys(
            cv.schema_with_slug_keys(
                {
                    vol.Optional("name"): _translation,
                    vol.Optional("state"): _STATES,
                    vol.Optional("state_attributes"): cv.schema_with_slug_keys(
                        {vol.Optional("name"): _translation, vol.Optional("state"): _STATES},
                        slug_validator=_translation_key,
                    ),
                },
                slug_validator=_translation_key,
            ),
            slug_validator=cv.slug,
        ),
        vol.Optional("exceptions"): cv.schema_with_slug_keys(
            {vol.Optional("message"): _translation}, slug_validator=cv.slug
        ),
        vol.Optional("services"): cv.schema_with_slug_keys(
            {
                vol.Required("name"): _translation,
                vol.Required("description"): _translation,
                vol.Optional("fields"): cv.schema_with_slug_keys(
                    {
                        vol.Required("name"): str,
                        vol.Required("description"): _translation,
                        vol.Optional("example"): _translation,
                    },
                    slug_validator=_translation_key,
                ),
                vol.Optional("sections"): cv.schema_with_slug_keys(
                    {vol.Required("name"): str, vol.Optional("description"): _translation},
                    slug_validator=_translation_key,
                ),
            },
            slug_validator=_translation_key,
        ),
        vol.Optional("system_health"): {
            vol.Optional("info"): cv.schema_with_slug_keys(
                _translation, slug_validator=_translation_key
            )
        },
        vol.Optional("device_automation"): {str: _TEXTS},
        vol.Optional("conversation"): {vol.Required("agent"): {vol.Required("done"): _translation}},
        vol.Optional("common"): vol.Schema({cv.slug: _translation}),
    }
)


@pytest.mark.parametrize("path", ["strings.json", "translations/en.json"])
def test_translation_files_follow_hassfest(path: str) -> None:
    STRINGS_SCHEMA(_json(INTEGRATION / path))


def test_english_is_the_strings() -> None:
    """Home Assistant reads translations/en.json for a custom integration, not strings.json."""
    strings, english = _flatten(STRINGS), _flatten(ENGLISH)
    assert english.keys() == strings.keys()
    differ = {
        key
        for key, text in strings.items()
        if not str(text).startswith("[%key:") and english[key] != text
    }
    assert differ == set()


# Config and options flows.


@dataclass
class _Form:
    section: str
    step_id: str
    schema: vol.Schema | None
    placeholders: set[str] | None
    where: str


@dataclass
class _Flows:
    forms: list[_Form]
    errors: dict[str, set[str]]
    aborts: dict[str, set[str]]


def _string_assignments(tree: ast.AST) -> dict[str, set[str]]:
    """Every text constant assigned to each plain name (`error = "invalid_auth"`)."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, set()).add(node.value.value)
    return found


def _is_errors(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "errors"


def _error_keys(source: Source, function: ast.AST) -> set[str]:
    """The error keys a flow step (or a helper it calls) puts into `errors`.

    Follows `errors[field] = "key"`, `errors = {...}`, `errors.update(helper(...))`,
    `errors["base"] = name` (every text assigned to that name in the module) and
    `errors[...] = helper(...)` (what the helper puts into its own `errors` or returns).
    """
    functions = {
        node.name: node
        for node in source.tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assigned = _string_assignments(source.tree)

    @functools.cache
    def of_function(name: str) -> frozenset[str]:
        node = functions[name]
        returned = {
            n.value.value
            for n in ast.walk(node)
            if isinstance(n, ast.Return)
            and isinstance(n.value, ast.Constant)
            and isinstance(n.value.value, str)
        }
        return frozenset(returned | direct(node))

    def values(node: ast.expr | None) -> set[str]:
        match node:
            case ast.Constant(value=str() as text):
                return {text}
            case ast.Dict(values=items):
                return set().union(*(values(item) for item in items))
            case ast.Name(id=name):
                return assigned.get(name, set())
            case ast.Await(value=inner):
                return values(inner)
            case ast.Call(func=ast.Name(id=name)) if name in functions:
                return set(of_function(name))
        return set()

    def direct(tree: ast.AST) -> set[str]:
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if _is_errors(target) or (
                        isinstance(target, ast.Subscript) and _is_errors(target.value)
                    ):
                        found |= values(node.value)
            elif isinstance(node, ast.AnnAssign) and _is_errors(node.target):
                found |= values(node.value)
            elif isinstance(node, ast.Call):
                func = node.func
                if (
                    isinstance(func, ast.Attribute)
                    and func.attr == "update"
                    and _is_errors(func.value)
                ):
                    found |= set().union(*(values(arg) for arg in node.args))
                found |= values(_keyword(node, "errors"))
        return found

    return direct(function)


def _abort_reasons(source: Source, method: ast.AST, method_name: str) -> set[str]:
    """Abort reasons of one step, including those Home Assistant's flow helpers use."""
    mismatch = inspect.signature(ConfigFlow._abort_if_unique_id_mismatch).parameters["reason"]
    reasons: set[str] = set()
    for call, name in _calls(method):
        reason = _keyword(call, "reason")
        if name == "async_abort":
            reasons.add(source.text(reason) if reason else source.text(call.args[0]))
        elif name == "_abort_if_unique_id_configured":
            reasons.add("already_configured")
        elif name == "_abort_if_unique_id_mismatch":
            reasons.add(source.text(reason) if reason else mismatch.default)
        elif name in ("async_update_reload_and_abort", "async_update_and_abort"):
            if reason:
                reasons.add(source.text(reason))
            elif "reconfigure" in method_name:
                reasons.add("reconfigure_successful")
            else:
                assert "reauth" in method_name, f"{source.where(call)}: which default reason?"
                reasons.add("reauth_successful")
        elif name == "async_set_unique_id":
            on_progress = _keyword(call, "raise_on_progress")
            if not (isinstance(on_progress, ast.Constant) and on_progress.value is False):
                reasons.add("already_in_progress")
    return reasons


def _schema(source: Source, node: ast.expr | None) -> vol.Schema | None:
    """The real schema object a form shows (through `add_suggested_values_to_schema`)."""
    if isinstance(node, ast.Call) and node.args:
        node = node.args[0]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "extend"
    ):
        node = node.func.value  # SCHEMA.extend(...): the fields shown are SCHEMA's
    if node is None:
        return None
    value = source.evaluate(node)
    assert isinstance(value, vol.Schema), f"{source.where(node)}: not a schema"
    return value


@functools.cache
def _flows() -> _Flows:
    source = _source("config_flow")
    flows = _Flows(forms=[], errors={}, aborts={})
    for cls in source.tree.body:
        if not isinstance(cls, ast.ClassDef):
            continue
        flow = getattr(source.module, cls.name)
        if issubclass(flow, ConfigFlow):
            section = "config"
        elif issubclass(flow, OptionsFlow):
            section = "options"
        else:
            continue
        for method in cls.body:
            if not isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            flows.errors.setdefault(section, set()).update(_error_keys(source, method))
            flows.aborts.setdefault(section, set()).update(
                _abort_reasons(source, method, method.name)
            )
            for call, name in _calls(method):
                if name in ("async_show_form", "async_show_menu", "async_show_progress"):
                    step_id = _keyword(call, "step_id")
                    assert step_id is not None, f"{source.where(call)}: no step_id"
                    flows.forms.append(
                        _Form(
                            section,
                            source.text(step_id),
                            _schema(source, _keyword(call, "data_schema")),
                            _dict_keys(source, _keyword(call, "description_placeholders")),
                            source.where(call),
                        )
                    )
    return flows


def test_flow_code_is_found() -> None:
    """The parsing finds the flows at all (so the tests below cannot pass vacuously)."""
    flows = _flows()
    assert {form.section for form in flows.forms} == {"config", "options"}
    assert flows.errors["config"]
    assert flows.aborts["config"]


def test_flow_steps_translated() -> None:
    missing: list[str] = []
    for form in _flows().forms:
        step = _lookup(STRINGS, form.section, "step", form.step_id)
        if step is None:
            missing.append(f"{form.where}: {form.section}.step.{form.step_id}")
            continue
        fields = [str(key) for key in form.schema.schema] if form.schema else []
        missing += [
            f"{form.where}: {form.section}.step.{form.step_id}.data.{field}"
            for field in fields
            if field not in step.get("data", {})
        ]
        used = _placeholders(step.get("title", "")) | _placeholders(step.get("description", ""))
        if form.placeholders is not None and (unset := used - form.placeholders):
            missing.append(f"{form.where}: placeholders {sorted(unset)} not passed")
    assert missing == []


def test_flow_errors_and_aborts_translated() -> None:
    flows = _flows()
    missing = [
        f"{section}.{kind}.{key}"
        for kind, found in (("error", flows.errors), ("abort", flows.aborts))
        for section, keys in found.items()
        for key in sorted(keys)
        if _lookup(STRINGS, section, kind, key) is None
    ]
    assert missing == []


def test_flow_selectors_translated() -> None:
    """Every option of a translated select selector in a form has its label."""
    missing = []
    for form in _flows().forms:
        for value in form.schema.schema.values() if form.schema else ():
            if not isinstance(value, selector.SelectSelector):
                continue
            if (key := value.config.get("translation_key")) is None:
                continue
            for option in value.config["options"]:
                option_value = option["value"] if isinstance(option, dict) else option
                if _lookup(STRINGS, "selector", key, "options", option_value) is None:
                    missing.append(f"selector.{key}.options.{option_value}")
    assert missing == []


# Entities, exceptions and repair issues.


@dataclass(frozen=True)
class _KeyUse:
    kind: Literal["entity", "exception", "issue", "selector"]
    key: str
    platform: str | None
    placeholders: set[str] | None
    where: str


@functools.cache
def _key_uses() -> tuple[_KeyUse, ...]:
    """Every `translation_key` the code uses, and what kind of translation it names."""
    uses: list[_KeyUse] = []
    for source in _sources():
        platform = source.name if source.name in PLATFORMS else None
        for node in ast.walk(source.tree):
            if isinstance(node, ast.Assign) and any(
                getattr(target, "id", None) == "_attr_translation_key" for target in node.targets
            ):
                assert platform, f"{source.where(node)}: entity outside a platform module"
                key = source.text(node.value)
                uses.append(_KeyUse("entity", key, platform, None, source.where(node)))
        for call, name in _calls(source.tree):
            if (key_node := _keyword(call, "translation_key")) is None:
                continue
            key = source.text(key_node)
            placeholders = _dict_keys(source, _keyword(call, "translation_placeholders"))
            if (domain := _keyword(call, "translation_domain")) is not None:
                if source.evaluate(domain) == DOMAIN:
                    uses.append(_KeyUse("exception", key, None, placeholders, source.where(call)))
            elif name.endswith("create_issue"):
                uses.append(_KeyUse("issue", key, None, placeholders, source.where(call)))
            elif name.endswith("SelectorConfig"):
                uses.append(_KeyUse("selector", key, None, None, source.where(call)))
            else:
                assert platform, f"{source.where(call)}: translation_key of what?"
                uses.append(_KeyUse("entity", key, platform, None, source.where(call)))
    return tuple(uses)


def _uses(kind: str) -> list[_KeyUse]:
    found = [use for use in _key_uses() if use.kind == kind]
    assert found, f"no {kind} translation keys found in the code"
    return found


def test_entity_translation_keys_translated() -> None:
    missing = [
        f"{use.where}: entity.{use.platform}.{use.key}"
        for use in _uses("entity")
        if _lookup(STRINGS, "entity", use.platform or "", use.key) is None
    ]
    assert missing == []


def _descriptions() -> Iterator[tuple[str, Any]]:
    """The entity descriptions each platform module defines at module level."""
    for source in _sources():
        if source.name not in PLATFORMS:
            continue
        for value in vars(source.module).values():
            items = value if isinstance(value, tuple | list) else (value,)
            for item in items:
                # By name: Home Assistant's frozen-dataclass shim makes a description built
                # from a core class fail isinstance() against EntityDescription.
                if any(cls.__name__ == "EntityDescription" for cls in type(item).__mro__):
                    yield source.name, item


def test_entity_states_and_event_types_translated() -> None:
    """Enum sensor states and event types show translated in the UI and in automations."""
    missing, checked = [], 0
    for platform, description in _descriptions():
        key = description.translation_key
        entity = _lookup(STRINGS, "entity", platform, key or "") or {}
        for option in getattr(description, "options", None) or ():
            checked += 1
            if option not in entity.get("state", {}):
                missing.append(f"entity.{platform}.{key}.state.{option}")
        event_states = _lookup(entity, "state_attributes", "event_type", "state") or {}
        for event_type in getattr(description, "event_types", None) or ():
            checked += 1
            if event_type not in event_states:
                missing.append(
                    f"entity.{platform}.{key}.state_attributes.event_type.state.{event_type}"
                )
    assert checked
    assert missing == []


def test_exceptions_and_issues_translated() -> None:
    missing = []
    for use in _uses("exception") + _uses("issue"):
        if use.kind == "exception":
            texts = [_lookup(STRINGS, "exceptions", use.key, "message")]
        else:
            issue = _lookup(STRINGS, "issues", use.key) or {}
            texts = [issue.get("title"), issue.get("description")]
        if None in texts:
            missing.append(f"{use.where}: {use.kind} {use.key}")
            continue
        used = set().union(*(_placeholders(text) for text in texts))
        if use.placeholders is not None and (unset := used - use.placeholders):
            missing.append(f"{use.where}: {use.key} placeholders {sorted(unset)} not passed")
    assert missing == []


# Actions: hassfest's services.py and icons.py.


def _field_schema(custom: bool) -> vol.Schema:
    fields: dict[Any, Any] = {
        vol.Optional("example"): vol.NotIn([None]),
        vol.Optional("default"): vol.NotIn([None]),
        vol.Optional("required"): bool,
        vol.Optional("advanced"): bool,
        vol.Optional(CONF_SELECTOR): selector.validate_selector,
        vol.Optional("filter"): {
            vol.Exclusive("attribute", "field_filter"): {
                vol.Required(str): [vol.All(str, service.validate_attribute_option)]
            },
            vol.Exclusive("supported_features", "field_filter"): [
                vol.All(str, service.validate_supported_feature)
            ],
        },
    }
    if custom:
        fields |= {vol.Optional("name"): str, vol.Optional("description"): str}
    return vol.Schema(fields)


SERVICES_SCHEMA = vol.Schema(
    {
        cv.slug: vol.Any(
            vol.Schema(
                {
                    vol.Optional("name"): str,
                    vol.Optional("description"): str,
                    vol.Optional("target"): vol.Any(selector.TargetSelector.CONFIG_SCHEMA, None),
                    vol.Optional("fields"): {
                        str: vol.Any(
                            _field_schema(custom=True),
                            vol.Schema(
                                {
                                    vol.Optional("name"): str,
                                    vol.Optional("description"): str,
                                    vol.Optional("collapsed"): bool,
                                    vol.Required("fields"): {str: _field_schema(custom=True)},
                                }
                            ),
                        )
                    },
                }
            ),
            None,
        )
    }
)


def _registered_actions() -> dict[str, str]:
    """Actions the code registers, with where."""
    found: dict[str, str] = {}
    for source in _sources():
        for call, name in _calls(source.tree):
            if name in ("async_register", "register", "async_register_admin_service"):
                domain_at = 1 if name == "async_register_admin_service" else 0
                if len(call.args) > domain_at + 1:
                    domain = source.evaluate(call.args[domain_at])
                    if domain == DOMAIN:
                        found[source.text(call.args[domain_at + 1])] = source.where(call)
            elif name == "async_register_entity_service":
                found[source.text(call.args[0])] = source.where(call)
    return found


def test_actions_described_translated_and_with_icons() -> None:
    SERVICES_SCHEMA(SERVICES)
    assert set(_registered_actions()) == set(SERVICES)
    assert set(STRINGS.get("services", {})) == set(SERVICES), "translations of no action"
    missing = []
    for action, description in SERVICES.items():
        texts = _lookup(STRINGS, "services", action) or {}
        for key in ("name", "description"):
            if key not in (description or {}) and key not in texts:
                missing.append(f"services.{action}.{key}")
        for field, schema in ((description or {}).get("fields") or {}).items():
            if "fields" in schema:  # a section
                if _lookup(texts, "sections", field, "name") is None:
                    missing.append(f"services.{action}.sections.{field}.name")
                continue
            for key in ("name", "description"):
                if key not in schema and _lookup(texts, "fields", field, key) is None:
                    missing.append(f"services.{action}.fields.{field}.{key}")
        icon = convert_shorthand_service_icon(ICONS.get("services", {}).get(action, {}))
        if "service" not in icon:
            missing.append(f"icons.json services.{action}")
    assert missing == []


def _icon(value: Any) -> str:
    text: str = cv.string_with_no_html(value)
    if not text.startswith("mdi:"):
        raise vol.Invalid("an icon is mdi:<name>")
    return text


def _states_differ_from_default(value: dict[str, Any]) -> dict[str, Any]:
    for key, icons in value.items():
        for state, icon in (icons.get("state") or {}).items():
            if icon == icons.get("default"):
                raise vol.Invalid(f"{key}.{state} is the default icon: remove it")
    return value


_ICON_STATES = cv.schema_with_slug_keys(_icon, slug_validator=_translation_key)
_DATA_ENTRY_ICONS = vol.Schema({"step": {str: {"section": {str: _icon}}}})
ICONS_SCHEMA = vol.Schema(
    {
        vol.Optional("config"): _DATA_ENTRY_ICONS,
        vol.Optional("options"): _DATA_ENTRY_ICONS,
        vol.Optional("issues"): {str: {"fix_flow": _DATA_ENTRY_ICONS}},
        vol.Optional("services"): cv.schema_with_slug_keys(
            vol.All(
                convert_shorthand_service_icon,
                {vol.Required("service"): _icon, vol.Optional("sections"): {str: _icon}},
            ),
            slug_validator=_translation_key,
        ),
        vol.Optional("entity"): cv.schema_with_slug_keys(
            vol.All(
                cv.schema_with_slug_keys(
                    {
                        vol.Optional("default"): _icon,
                        vol.Optional("state"): _ICON_STATES,
                        vol.Optional("range"): {str: _icon},
                        vol.Optional("state_attributes"): cv.schema_with_slug_keys(
                            {vol.Optional("default"): _icon, vol.Optional("state"): _ICON_STATES},
                            slug_validator=_translation_key,
                        ),
                    },
                    slug_validator=_translation_key,
                ),
                _states_differ_from_default,
            ),
            slug_validator=cv.slug,
        ),
    }
)


def test_icons_follow_hassfest_and_name_used_keys() -> None:
    ICONS_SCHEMA(ICONS)
    used = {(use.platform, use.key) for use in _uses("entity")}
    unused = [
        f"entity.{platform}.{key}"
        for platform, keys in ICONS.get("entity", {}).items()
        for key in keys
        if (platform, key) not in used
    ]
    assert unused == []
