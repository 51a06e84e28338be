"""The telemetry app settings exactly as infra/ deploys them, read from the Bicep module (pycep, as tests/infra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from pycep import BicepParser

FUNCTION_APP_MODULE = Path(__file__).resolve().parents[2] / "infra" / "modules" / "function-app.bicep"
# Whose values come from the deployment itself (the Application Insights resource): a test gives its own.
FROM_THE_DEPLOYMENT = {"APPLICATIONINSIGHTS_CONNECTION_STRING"}


def _module() -> dict[str, Any]:
    return cast(dict[str, Any], BicepParser().parse(file_path=FUNCTION_APP_MODULE))


def deployed_app_settings() -> dict[str, Any]:
    """name -> value (as parsed: literal strings, or the name of a parameter or variable) of every app setting."""
    settings: dict[str, Any] = {}
    for var in _module()["variables"].values():
        value = var["value"]
        if (
            isinstance(value, list)
            and value
            and all(isinstance(i, dict) and set(i) == {"name", "value"} for i in value)
        ):
            settings.update({item["name"]: item["value"] for item in value})
    return settings


def deployed_telemetry_settings(identity_client_id: str) -> dict[str, str]:
    """The settings that decide telemetry (the worker's switches, the sampler, Entra ingestion), resolved."""
    doc = _module()
    parameters = doc["parameters"]
    resolved: dict[str, str] = {}
    for name, value in deployed_app_settings().items():
        if not name.startswith(("PYTHON_", "OTEL_", "APPLICATIONINSIGHTS_")) or name in FROM_THE_DEPLOYMENT:
            continue
        if isinstance(value, str) and value in parameters:  # a parameter: its default
            value = parameters[value]["default"]
        if not isinstance(value, str):
            raise AssertionError(f"{name}: cannot resolve {value!r}")
        resolved[name] = value.replace("${identityClientId}", identity_client_id)
    return resolved
