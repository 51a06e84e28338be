"""Static tests of the Bicep templates in infra/.

The Bicep CLI cannot be installed here, so the templates are parsed with
pycep-parser (the parser checkov uses) and the tests assert on the parsed
values: event filter and retry policy, dead-lettering, role assignments and
their scopes, storage hardening, app settings, and that azd's files agree with
the templates. Every value asserted is read from the templates.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
from pycep import BicepParser

from recording_pipeline.edges.telemetry import APP_LOGGER

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MODULES = INFRA / "modules"

# Built-in Azure role definition ids (identical in every tenant).
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
COMMUNICATION_AND_EMAIL_SERVICE_OWNER = "09976791-48a7-449e-bb21-39d1a415f350"
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",  # Owner
    "b24988ac-6180-42a0-ab88-20f7382dd24c",  # Contributor
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",  # User Access Administrator
    "17d1049b-9a84-46fb-8f53-869881c3d3ab",  # Storage Account Contributor
}

# The custom role rbac.bicep defines for the write-once archive container.
ARCHIVE_WRITER = "custom:archiveWriterRole"

RECORDING_EVENT = "Microsoft.Communication.RecordingFileStatusUpdated"

_PARSER = BicepParser()


@cache
def parse(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], _PARSER.parse(file_path=path))


def bicep(name: str) -> dict[str, Any]:
    path = INFRA / name
    if not path.exists():
        path = MODULES / name
    return parse(path)


def all_bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource's object, unwrapping `= if (cond) { ... }`."""
    config = cast(dict[str, Any], resource["config"])
    if set(config) == {"condition", "config"}:
        return cast(dict[str, Any], config["config"])
    return config


def condition(resource: dict[str, Any]) -> Any:
    config = resource["config"]
    return config["condition"] if set(config) == {"condition", "config"} else None


def resources(doc: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in doc.get("resources", {}).items() if res["type"].lower() == rtype.lower()}


def the_resource(doc: dict[str, Any], rtype: str) -> tuple[str, dict[str, Any]]:
    found = resources(doc, rtype)
    assert len(found) == 1, f"expected one {rtype}, found {sorted(found)}"
    return next(iter(found.items()))


def resolve(doc: dict[str, Any], value: Any) -> Any:
    """Follow a bare identifier to a variable's value or a parameter's default."""
    seen = set()
    while isinstance(value, str) and value not in seen:
        seen.add(value)
        if value in doc.get("variables", {}):
            value = doc["variables"][value]["value"]
        elif value in doc.get("parameters", {}):
            value = doc["parameters"][value].get("default")
        else:
            break
    return value


def walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def role_guid(doc: dict[str, Any], assignment: dict[str, Any]) -> str:
    """GUID of roleDefinitionId: subscriptionResourceId('...roleDefinitions', X).

    A custom role defined in the same file (X is `<symbol>.name`) comes back as
    ``custom:<symbol>``.
    """
    role = body(assignment)["properties"]["roleDefinitionId"]
    function = role["function"]
    assert function["type"] == "subscription_resource_id"
    assert function["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    name = function["parameters"]["resource_name_1"]
    if isinstance(name, dict) and name.get("operator", {}).get("type") == "property_accessor":
        operands = name["operator"]["operands"]
        symbol = operands["operand_1"]
        assert operands["operand_2"] == "name"
        assert doc["resources"][symbol]["type"] == "Microsoft.Authorization/roleDefinitions"
        return f"custom:{symbol}"
    guid = resolve(doc, name)
    assert isinstance(guid, str)
    return guid


def role_assignments(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each assignment with its role GUID, principal and the resource it is scoped to."""
    out = []
    for name, res in resources(doc, "Microsoft.Authorization/roleAssignments").items():
        props = body(res)["properties"]
        scope_symbol = body(res)["scope"]
        scope = doc["resources"][scope_symbol]
        out.append(
            {
                "name": name,
                "role": role_guid(doc, res),
                "principal": props["principalId"],
                "principalType": props.get("principalType"),
                "scope_type": scope["type"],
                "scope_name": body(scope)["name"],
                "scope_parent": body(scope).get("parent"),
            }
        )
    return out


def app_settings(doc: dict[str, Any]) -> dict[str, Any]:
    """name -> value of every app setting the function app module can emit."""
    settings: dict[str, Any] = {}
    for var in doc["variables"].values():
        value = var["value"]
        if (
            isinstance(value, list)
            and value
            and all(isinstance(item, dict) and set(item) == {"name", "value"} for item in value)
        ):
            for item in value:
                settings[item["name"]] = item["value"]
    return settings


# --- every file parses --------------------------------------------------------


@pytest.mark.parametrize("path", all_bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    doc = parse(path)
    assert doc.get("resources") or doc.get("modules"), f"{path} declares nothing"


# --- Event Grid subscription (step 2) -----------------------------------------


def event_subscription() -> tuple[dict[str, Any], dict[str, Any]]:
    doc = bicep("subscription.bicep")
    _, sub = the_resource(doc, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    return doc, body(sub)


def test_subscription_filters_only_recording_file_status_updated() -> None:
    _, sub = event_subscription()
    event_filter = sub["properties"]["filter"]
    assert event_filter["includedEventTypes"] == [RECORDING_EVENT]
    assert "advancedFilters" not in event_filter
    assert "subjectBeginsWith" not in event_filter


def test_subscription_retries_30_times_within_24_hours() -> None:
    _, sub = event_subscription()
    assert sub["properties"]["retryPolicy"] == {
        "maxDeliveryAttempts": 30,
        "eventTimeToLiveInMinutes": 1440,
    }


def test_subscription_dead_letters_to_blob_with_the_topic_identity() -> None:
    doc, sub = event_subscription()
    props = sub["properties"]
    assert "deadLetterDestination" not in props, "key-based dead-lettering; use the identity"
    dead_letter = props["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    destination = dead_letter["deadLetterDestination"]
    assert destination["endpointType"] == "StorageBlob"
    assert destination["properties"]["resourceId"] == "deadLetterStorageAccountId"
    assert "deadLetterStorageAccountId" in doc["parameters"]
    container = resolve(doc, destination["properties"]["blobContainerName"])
    assert container == resolve(bicep("archive-storage.bicep"), "deadLetterContainerName")
    assert container == resolve(bicep("main.bicep"), "deadLetterContainerName")


def test_subscription_delivers_to_the_function_webhook_with_its_key() -> None:
    doc, sub = event_subscription()
    props = sub["properties"]
    assert props["eventDeliverySchema"] == "EventGridSchema"
    destination = props["destination"]
    assert destination["endpointType"] == "WebHook"
    url = destination["properties"]["endpointUrl"]
    assert url.startswith("https://${site.properties.defaultHostName}/api/${functionRoute}?code=")
    assert "webhookFunction.listKeys().default" in url
    assert resolve(doc, "functionRoute") == "recording-events"
    assert resolve(doc, "functionName") == "recording_events"
    function = doc["resources"]["webhookFunction"]
    assert function["type"] == "Microsoft.Web/sites/functions" and function["existing"]
    assert body(function)["name"] == "functionName"


def test_subscription_hangs_off_the_existing_system_topic() -> None:
    doc, sub = event_subscription()
    topic = doc["resources"][sub["parent"]]
    assert topic["type"] == "Microsoft.EventGrid/systemTopics"
    assert topic["existing"] is True


def test_system_topic_watches_the_acs_resource_with_an_identity() -> None:
    doc = bicep("eventgrid-topic.bicep")
    _, topic = the_resource(doc, "Microsoft.EventGrid/systemTopics")
    config = body(topic)
    assert config["location"] == "global"
    assert config["identity"] == {"type": "SystemAssigned"}
    assert config["properties"]["topicType"] == "Microsoft.Communication.CommunicationServices"
    assert config["properties"]["source"] == "acsResourceId"


# --- role assignments ---------------------------------------------------------


def test_archive_writer_is_scoped_to_the_archive_and_dead_letter_containers_only() -> None:
    """Create and read, no delete: the write-once archive, and the dead-letter container, whose blobs the app reads
    and beside which it creates its redrive records (app/deadletter.py)."""
    doc = bicep("rbac.bicep")
    assignments = [a for a in role_assignments(doc) if a["principal"] == "appPrincipalId"]
    archive = [a for a in assignments if a["role"] == ARCHIVE_WRITER]
    assert sorted(a["scope_name"] for a in archive) == ["archiveContainerName", "deadLetterContainerName"]
    for scope in archive:
        assert scope["scope_type"] == "Microsoft.Storage/storageAccounts/blobServices/containers"
        blob_service = doc["resources"][scope["scope_parent"]]
        account = doc["resources"][body(blob_service)["parent"]]
        assert body(account)["name"] == "archiveStorageAccountName"
    role = body(doc["resources"]["archiveWriterRole"])["properties"]["permissions"][0]
    assert not [a for a in resolve(doc, role["dataActions"]) if "delete" in a.lower()]
    # Nothing on the archive account itself.
    archive_account_symbols = {
        name
        for name, res in resources(doc, "Microsoft.Storage/storageAccounts").items()
        if body(res)["name"] == "archiveStorageAccountName"
    }
    for assignment in role_assignments(doc):
        raw_scope = body(doc["resources"][assignment["name"]])["scope"]
        assert raw_scope not in archive_account_symbols


def test_function_storage_roles_for_host_and_queue() -> None:
    doc = bicep("rbac.bicep")
    on_function_storage = {
        a["role"]
        for a in role_assignments(doc)
        if a["principal"] == "appPrincipalId"
        and a["scope_type"] == "Microsoft.Storage/storageAccounts"
        and a["scope_name"] == "functionStorageAccountName"
    }
    assert on_function_storage == {STORAGE_BLOB_DATA_OWNER, STORAGE_QUEUE_DATA_CONTRIBUTOR}


def test_monitoring_and_key_vault_roles() -> None:
    doc = bicep("rbac.bicep")
    by_role = {a["role"]: a for a in role_assignments(doc) if a["principal"] == "appPrincipalId"}
    assert by_role[MONITORING_METRICS_PUBLISHER]["scope_type"] == "Microsoft.Insights/components"
    assert by_role[KEY_VAULT_SECRETS_USER]["scope_type"] == "Microsoft.KeyVault/vaults"


def test_event_grid_identity_writes_only_the_dead_letter_container() -> None:
    doc = bicep("rbac.bicep")
    topic = [a for a in role_assignments(doc) if a["principal"] == "systemTopicPrincipalId"]
    assert len(topic) == 1
    assert topic[0]["role"] == STORAGE_BLOB_DATA_CONTRIBUTOR
    assert topic[0]["scope_type"] == "Microsoft.Storage/storageAccounts/blobServices/containers"
    assert topic[0]["scope_name"] == "deadLetterContainerName"


def test_role_assignments_are_exactly_the_least_privilege_set() -> None:
    doc = bicep("rbac.bicep")
    got = sorted((a["principal"], a["role"], a["scope_type"].rsplit("/", 1)[-1]) for a in role_assignments(doc))
    assert got == sorted(
        [
            ("appPrincipalId", ARCHIVE_WRITER, "containers"),
            ("appPrincipalId", ARCHIVE_WRITER, "containers"),
            ("appPrincipalId", STORAGE_BLOB_DATA_CONTRIBUTOR, "containers"),
            ("appPrincipalId", STORAGE_BLOB_DATA_OWNER, "storageAccounts"),
            ("appPrincipalId", STORAGE_QUEUE_DATA_CONTRIBUTOR, "storageAccounts"),
            ("appPrincipalId", MONITORING_METRICS_PUBLISHER, "components"),
            ("appPrincipalId", KEY_VAULT_SECRETS_USER, "vaults"),
            ("systemTopicPrincipalId", STORAGE_BLOB_DATA_CONTRIBUTOR, "containers"),
        ]
    )
    for assignment in role_assignments(doc):
        assert assignment["principalType"] == "ServicePrincipal"


def test_no_broad_roles_anywhere() -> None:
    for path in all_bicep_files():
        text = path.read_text()
        for role in BROAD_ROLES:
            assert role not in text, f"{path.name} grants a broad role {role}"


def test_entra_mode_grants_a_role_on_the_acs_resource() -> None:
    doc = bicep("acs-rbac.bicep")
    (assignment,) = role_assignments(doc)
    assert assignment["scope_type"] == "Microsoft.Communication/communicationServices"
    assert assignment["role"] == COMMUNICATION_AND_EMAIL_SERVICE_OWNER
    main = bicep("main.bicep")
    module = main["modules"]["acsRbac"]
    assert module["detail"]["path"] == "modules/acs-rbac.bicep"
    cond = condition(module)
    assert cond["operator"]["type"] == "equals"
    assert cond["operator"]["operands"] == {"operand_1": "acsAuthMode", "operand_2": "entra"}
    assert resolve(main, "acsRoleDefinitionGuid") == COMMUNICATION_AND_EMAIL_SERVICE_OWNER


# --- archive storage hardening ------------------------------------------------


def archive() -> tuple[dict[str, Any], dict[str, Any]]:
    doc = bicep("archive-storage.bicep")
    _, account = the_resource(doc, "Microsoft.Storage/storageAccounts")
    return doc, body(account)


def test_archive_account_is_locked_down() -> None:
    doc, account = archive()
    props = account["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["allowCrossTenantReplication"] is False
    # The archive tier is not available on ZRS/GZRS accounts.
    sku = resolve(doc, account["sku"]["name"])
    assert sku in {"Standard_LRS", "Standard_GRS", "Standard_RAGRS"}
    allowed = next(d for d in doc["parameters"][account["sku"]["name"]]["decorators"] if d["type"] == "allowed")
    assert not any("ZRS" in option for option in allowed["argument"])


def test_archive_versioning_and_soft_delete() -> None:
    doc = bicep("archive-storage.bicep")
    _, service = the_resource(doc, "Microsoft.Storage/storageAccounts/blobServices")
    props = body(service)["properties"]
    assert props["isVersioningEnabled"] is True
    for policy in ("deleteRetentionPolicy", "containerDeleteRetentionPolicy"):
        assert props[policy]["enabled"] is True
        assert resolve(doc, props[policy]["days"]) >= 7


def test_archive_containers_are_private() -> None:
    doc = bicep("archive-storage.bicep")
    containers = resources(doc, "Microsoft.Storage/storageAccounts/blobServices/containers")
    names = {resolve(doc, body(c)["name"]) for c in containers.values()}
    assert names == {"recordings", "recordings-state", "eventgrid-deadletter"}
    for container in containers.values():
        assert body(container)["properties"]["publicAccess"] == "None"


def test_function_storage_is_identity_only_and_has_the_queues() -> None:
    doc = bicep("function-storage.bicep")
    _, account = the_resource(doc, "Microsoft.Storage/storageAccounts")
    props = body(account)["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    queues = resources(doc, "Microsoft.Storage/storageAccounts/queueServices/queues")
    names = sorted(body(q)["name"] for q in queues.values())
    assert names == ["${chunkQueueName}-poison", "chunkQueueName"]
    assert resolve(doc, "chunkQueueName") == "recording-chunks"
    assert resolve(bicep("main.bicep"), "chunkQueueName") == "recording-chunks"


# --- function app -------------------------------------------------------------


def test_function_app_is_flex_consumption_python_313() -> None:
    doc = bicep("function-app.bicep")
    _, plan = the_resource(doc, "Microsoft.Web/serverfarms")
    assert body(plan)["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    _, site = the_resource(doc, "Microsoft.Web/sites")
    config = body(site)
    props = config["properties"]
    app_config = props["functionAppConfig"]
    assert app_config["runtime"] == {"name": "python", "version": "3.13"}
    assert resolve(doc, app_config["scaleAndConcurrency"]["instanceMemoryMB"]) == 2048
    assert resolve(bicep("main.bicep"), "instanceMemoryMB") == 2048
    storage = app_config["deployment"]["storage"]
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    assert props["siteConfig"]["ftpsState"] == "Disabled"
    assert config["identity"]["type"] == "UserAssigned"
    assert props["keyVaultReferenceIdentity"] == "identityId"
    policies = resources(doc, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {body(p)["name"]: body(p)["properties"]["allow"] for p in policies.values()} == {
        "ftp": False,
        "scm": False,
    }


def test_app_settings_match_the_code_contract() -> None:
    doc = bicep("function-app.bicep")
    settings = app_settings(doc)
    required = {
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "AZURE_CLIENT_ID",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "ARCHIVE_STORAGE_ACCOUNT_URL",
        "ARCHIVE_CONTAINER",
        "CHUNK_QUEUE_NAME",
        "ACS_RESOURCE_ID",
        "RECORDING_ALLOWED_HOSTS",
        "RECORDING_ALLOW_HTTP",
        "RECORDING_RETENTION_HOURS",
        "ACS_CONNECTION_STRING",
        "ACS_ENDPOINT",
    }
    assert required <= set(settings)
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["RECORDING_ALLOW_HTTP"] == "false"
    assert settings["ACS_CONNECTION_STRING"].startswith("@Microsoft.KeyVault(SecretUri=")
    assert resolve(doc, "recordingAllowedHosts") == (
        ".asm.skype.com,.asyncgw.teams.microsoft.com,.ams.gov.teams.microsoft.us"
    )
    # Local-only or key-based settings never reach Azure.
    for forbidden in ("WEBHOOK_KEY", "ARCHIVE_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage"):
        assert forbidden not in settings
    # One ACS credential per mode.
    acs = doc["variables"]["acsSettings"]["value"]["operator"]
    assert acs["type"] == "conditional"
    assert acs["operands"]["condition"]["operator"]["operands"] == {
        "operand_1": "acsAuthMode",
        "operand_2": "hmac",
    }
    assert acs["operands"]["true_value"] == "hmacSettings"
    assert acs["operands"]["false_value"] == "entraSettings"
    assert [s["name"] for s in doc["variables"]["hmacSettings"]["value"]] == ["ACS_CONNECTION_STRING"]
    assert [s["name"] for s in doc["variables"]["entraSettings"]["value"]] == ["ACS_ENDPOINT"]


def test_telemetry_is_the_python_workers_with_the_hosts_in_opentelemetry_mode() -> None:
    settings = app_settings(bicep("function-app.bicep"))
    # azure-functions-runtime (3.13) and the 4.x worker (3.11, 3.12) each read their own names: both are set.
    assert settings["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    assert settings["PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME"] == APP_LOGGER
    assert settings["PYTHON_ENABLE_OPENTELEMETRY"] == "true"
    assert settings["PYTHON_AZURE_MONITOR_LOGGER_NAME"] == APP_LOGGER
    # Whole traces: parent-based, in the distro's spelling (an unknown name falls back to its rate-limited sampler).
    assert settings["OTEL_TRACES_SAMPLER"] == "parentbased_trace_id_ratio"
    assert resolve(bicep("function-app.bicep"), settings["OTEL_TRACES_SAMPLER_ARG"]) == "1.0"
    host = json.loads((REPO / "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"
    # The classic SDK's sampling does not apply in OpenTelemetry mode; leaving it would only mislead.
    assert "applicationInsights" not in host["logging"]


def test_the_telemetry_settings_infra_deploys_are_in_the_sample_and_the_readme() -> None:
    """infra, local.settings.sample.json and README agree on every setting that decides telemetry."""
    settings = app_settings(bicep("function-app.bicep"))
    names = {n for n in settings if n.startswith(("PYTHON_", "OTEL_"))}
    assert names >= {
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
        "PYTHON_ENABLE_OPENTELEMETRY",
        "OTEL_TRACES_SAMPLER",
    }
    sample = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Configuration") : readme.index("## host.json, and why")]
    for name in sorted(names):
        assert name in sample, f"{name} is deployed but not in local.settings.sample.json"
        assert f"| `{name}` |" in table, f"{name} is deployed but not in README's configuration table"
    # The sampler's name is the distro's, the same everywhere.
    assert sample["OTEL_TRACES_SAMPLER"] == settings["OTEL_TRACES_SAMPLER"]
    assert f"`OTEL_TRACES_SAMPLER={settings['OTEL_TRACES_SAMPLER']}`" in readme


def test_flex_site_updates_recreate_as_the_readme_says() -> None:
    doc = bicep("function-app.bicep")
    _, site = the_resource(doc, "Microsoft.Web/sites")
    strategy = body(site)["properties"]["functionAppConfig"]["siteUpdateStrategy"]["type"]
    assert resolve(doc, strategy) == "Recreate"
    # Microsoft's "Site update strategies in Flex Consumption": Bicep and ARM with API version 2024-11-01 or later.
    assert str(site["api_version"]) >= "2024-11-01"
    assert "`Recreate`, which `infra/` sets explicitly" in (REPO / "README.md").read_text()


def test_azd_service_tag_matches_azure_yaml() -> None:
    doc = bicep("function-app.bicep")
    _, site = the_resource(doc, "Microsoft.Web/sites")
    tags = body(site)["tags"]["function"]
    assert tags["type"] == "union"
    assert {"'azd-service-name'": "serviceName"} in tags["parameters"].values()
    assert body(bicep("main.bicep")["modules"]["functionApp"])["params"]["serviceName"] == "api"
    yaml_text = (REPO / "azure.yaml").read_text()
    assert re.search(r"^services:\n  api:\n(    .*\n)*?    host: function$", yaml_text, re.M)
    assert re.search(r"^  api:\n(    .*\n)*?    language: python$", yaml_text, re.M)
    assert re.search(r"^  api:\n(    .*\n)*?    project: \.$", yaml_text, re.M)


# --- key vault, monitoring, alerts --------------------------------------------


def test_key_vault_uses_rbac_soft_delete_and_purge_protection() -> None:
    doc = bicep("keyvault.bicep")
    _, vault = the_resource(doc, "Microsoft.KeyVault/vaults")
    props = body(vault)["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert props["enablePurgeProtection"] is True
    secret_doc = bicep("keyvault-secret.bicep")
    assert "secure" in {d["type"] for d in secret_doc["parameters"]["secretValue"]["decorators"]}


def test_app_insights_rejects_key_based_ingestion() -> None:
    doc = bicep("monitoring.bicep")
    _, component = the_resource(doc, "Microsoft.Insights/components")
    assert body(component)["properties"]["DisableLocalAuth"] is True
    settings = app_settings(bicep("function-app.bicep"))
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].endswith("Authorization=AAD")


def test_alerts_cover_poison_queue_lost_chunks_and_failures() -> None:
    doc = bicep("alerts.bicep")
    queries = [
        criterion["query"]
        for rule in resources(doc, "Microsoft.Insights/scheduledQueryRules").values()
        for criterion in body(rule)["properties"]["criteria"]["allOf"]
    ]
    assert any('"recording chunk lost"' in q for q in queries)
    # What the app logs (functions_host.load_app_config, deliver) when it cannot use its settings.
    assert any('message has "configuration error"' in q for q in queries)
    # Both the worker's own quarantine message and the host's move to the poison queue raise the alert.
    assert any(
        "recording chunk failed after" in q
        and "MaxDequeueCount" in q
        and "${poisonQueueName}" in q
        and "recording chunk still failing after" in q
        and 'customMetrics | where name == "recording.poison_queue.depth" and value > 0' in q
        for q in queries
    )
    metrics = [
        criterion["metricName"]
        for rule in resources(doc, "Microsoft.Insights/metricAlerts").values()
        for criterion in body(rule)["properties"]["criteria"]["allOf"]
    ]
    assert metrics == ["requests/failed"]
    main = bicep("main.bicep")
    poison = body(main["modules"]["alerts"])["params"]["poisonQueueName"]
    assert poison == {
        "operator": {
            "type": "property_accessor",
            "operands": {
                "operand_1": "functionStorage",
                "operand_2": {
                    "operator": {
                        "type": "property_accessor",
                        "operands": {"operand_1": "outputs", "operand_2": "poisonQueueName"},
                    }
                },
            },
        }
    }


def test_alerts_cover_refused_and_dead_lettered_events() -> None:
    """On what the app logs when it refuses an event or a delivery (app/webhook.py) and when its timer finds a
    dead-lettered event, and the gauge of those still waiting (app/deadletter.py, functions_adapter.py). That a run
    exports exactly these: tests/e2e/test_deadletter.py::
    test_the_refused_and_dead_letter_alerts_query_what_the_app_exports."""
    doc = bicep("alerts.bicep")
    rules = resources(doc, "Microsoft.Insights/scheduledQueryRules")
    refused = body(rules["refusedEventAlert"])["properties"]
    dead = body(rules["deadLetterAlert"])["properties"]
    [refused_query] = [c["query"] for c in refused["criteria"]["allOf"]]
    [dead_query] = [c["query"] for c in dead["criteria"]["allOf"]]
    code = REPO / "recording_pipeline"
    webhook, redrive = (code / "app" / "webhook.py").read_text(), (code / "app" / "deadletter.py").read_text()
    for prefix in re.findall(r'message startswith "([^"]+)"', refused_query):
        assert f'"{prefix}' in webhook, prefix
    [found] = re.findall(r'message startswith "([^"]+)"', dead_query)
    assert f'"{found}' in redrive
    [metric] = re.findall(r'customMetrics \| where name == "([^"]+)" and value > 0', dead_query)
    assert f'_meter.create_gauge(\n    "{metric}"' in (code / "edges" / "telemetry.py").read_text()
    assert refused["severity"] == dead["severity"] == 1 and refused["autoMitigate"] is dead["autoMitigate"] is False
    assert resolve(doc, dead["evaluationFrequency"]) == "PT5M"
    main = bicep("main.bicep")
    for module in ("alerts", "functionApp"):
        source = body(main["modules"][module])["params"]["deadLetterContainerName"]["operator"]["operands"]
        assert source["operand_1"] == "archiveStorage"


def test_the_dead_letter_settings_infra_deploys_are_the_app_s() -> None:
    """DEADLETTER_CONTAINER is the container the subscription dead-letters into; the redrive is on unless told."""
    from recording_pipeline.core.settings import NAMES

    settings = app_settings(bicep("function-app.bicep"))
    assert settings["DEADLETTER_CONTAINER"] == "deadLetterContainerName"
    redrive = settings["DEADLETTER_REDRIVE_ON_SCHEDULE"]["operator"]
    assert redrive["type"] == "conditional" and redrive["operands"]["condition"] == "deadLetterRedriveOnSchedule"
    assert (redrive["operands"]["true_value"], redrive["operands"]["false_value"]) == ("true", "false")
    assert resolve(bicep("main.bicep"), "deadLetterRedriveOnSchedule") is True
    assert resolve(bicep("main.bicep"), "deadLetterContainerName") == NAMES["DEADLETTER_CONTAINER"]
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["deadLetterRedriveOnSchedule"]["value"] == "${DEADLETTER_REDRIVE_ON_SCHEDULE=true}"


def test_a_failed_fixity_check_raises_an_alert_on_what_the_audit_emits() -> None:
    from recording_pipeline.app.fixity import FAILED, FAILED_LINE

    rules = resources(bicep("alerts.bicep"), "Microsoft.Insights/scheduledQueryRules")
    [rule] = [body(r)["properties"] for r in rules.values() if "fixity" in body(r)["properties"]["displayName"]]
    [criterion] = rule["criteria"]["allOf"]
    query = criterion["query"]
    assert f'traces | where message has "{FAILED_LINE}"' in query
    # The metric's name as the audit's points arrive (tests/e2e/test_fixity.py reads them by this name).
    assert 'customMetrics | where name == "recording.fixity.chunks"' in query
    assert 'in ("mismatch", "missing")' in query and {r.value for r in FAILED} == {"mismatch", "missing"}
    assert (criterion["operator"], criterion["threshold"], rule["severity"]) == ("GreaterThan", 0, 1)
    assert rule["actions"]["actionGroups"] and rule["enabled"] is True


# --- main.bicep, parameters, hook ---------------------------------------------


def test_main_modules_exist_and_topic_lives_with_acs() -> None:
    main = bicep("main.bicep")
    assert main["globals"]["scope"]["value"] == "subscription"
    for name, module in main["modules"].items():
        assert (INFRA / module["detail"]["path"]).is_file(), name
    scope = body(main["modules"]["eventGridTopic"])["scope"]["function"]
    assert scope["type"] == "resource_group"
    assert set(scope["parameters"].values()) == {"acsSubscriptionId", "acsResourceGroupName"}


def test_parameters_file_feeds_main_bicep() -> None:
    main = bicep("main.bicep")
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(params) <= set(main["parameters"])
    required = {name for name, p in main["parameters"].items() if "default" not in p}
    assert required <= set(params)
    assert params["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert params["location"]["value"] == "${AZURE_LOCATION}"


def test_postdeploy_hook_uses_only_values_main_bicep_outputs() -> None:
    main = bicep("main.bicep")
    outputs = set(main["outputs"])
    azd_builtins = {"AZURE_SUBSCRIPTION_ID"}
    optional = {
        "SKIP_EVENTGRID_SUBSCRIPTION",
        "RECORDING_EVENTS_FUNCTION",
        "SKIP_DEPLOYMENT_CHECK",
        "DEPLOYMENT_CHECK_STRICT",
    }
    # check.sh names one of the Function App's own settings (it leaves out the app's identity), not an azd value.
    app_setting = {"AZURE_CLIENT_ID"}
    for hook in ("postdeploy.sh", "postdeploy.ps1", "check.sh"):
        text = (INFRA / "hooks" / hook).read_text()
        used = set(re.findall(r"\b(?:AZURE|EVENTGRID|ARCHIVE|DEADLETTER)_[A-Z_]+\b", text))
        used |= set(re.findall(r"\$env:([A-Z_]+)", text))
        missing = used - outputs - azd_builtins - optional - (app_setting if hook == "check.sh" else set())
        assert not missing, f"{hook} reads {sorted(missing)} that main.bicep does not output"
    sub = bicep("subscription.bicep")
    text = (INFRA / "hooks" / "postdeploy.sh").read_text()
    passed = set(re.findall(r"^ {6}(\w+)=\"\$", text, re.M))
    assert passed <= set(sub["parameters"])
    assert {n for n, p in sub["parameters"].items() if "default" not in p} <= passed


def test_the_postdeploy_hook_ends_by_proving_the_deployment() -> None:
    """azd up ends with recording-archive check, on the Function App's own settings (infra/hooks/check.sh)."""
    import subprocess

    hooks = INFRA / "hooks"
    post = (hooks / "postdeploy.sh").read_text()
    assert post.rstrip().endswith('sh "$here/check.sh"') and "exit 0\n  fi\n  if" not in post
    check = (hooks / "check.sh").read_text()
    assert "az functionapp config appsettings list" in check
    assert "-m recording_pipeline check" in check and '"az", "keyvault", "secret", "show"' in check
    for script in ("postdeploy.sh", "check.sh"):
        assert subprocess.run(["sh", "-n", str(hooks / script)], check=False).returncode == 0, script
    assert "check.sh" in (hooks / "postdeploy.ps1").read_text()


@pytest.mark.parametrize(("strict", "status"), [("", 0), ("true", 1)])
def test_a_failing_check_fails_the_deploy_only_when_strict(tmp_path: Path, strict: str, status: int) -> None:
    """The operator has none of the app's data-plane roles: by default the hook reports FAIL lines and goes on."""
    import subprocess

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "az").write_text("#!/bin/sh\necho '[]'\n")  # the Function App's settings: none, so check FAILs
    (fake / "az").chmod(0o755)
    env = {
        "PATH": f"{fake}:{os.environ['PATH']}",
        "AZURE_SUBSCRIPTION_ID": "s",
        "AZURE_RESOURCE_GROUP": "g",
        "AZURE_FUNCTION_APP_NAME": "f",
        "DEPLOYMENT_CHECK_STRICT": strict,
    }
    done = subprocess.run(
        ["sh", str(INFRA / "hooks" / "check.sh")], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert "FAIL" in done.stdout, done.stdout + done.stderr
    assert done.returncode == status, done.stdout + done.stderr
    if not strict:
        assert "describe the signed-in operator's" in done.stderr


# --- outbound events topic ----------------------------------------------------

EVENTGRID_DATA_SENDER = "d5a91429-5739-47e2-a06b-3470a27159e7"


def test_outbound_topic_is_off_by_default_and_feeds_the_app_setting_when_on() -> None:
    main = bicep("main.bicep")
    assert main["parameters"]["outboundEventsTopic"]["default"] is False
    module = main["modules"]["outboundTopic"]
    assert module["detail"]["path"] == "modules/outbound-topic.bicep" and condition(module) == "outboundEventsTopic"
    assert body(module)["params"]["senderPrincipalId"]["operator"]["operands"]["operand_1"] == "identity"
    endpoint = body(main["modules"]["functionApp"])["params"]["outboundEventsTopicEndpoint"]["operator"]
    assert endpoint["type"] == "conditional" and endpoint["operands"]["condition"] == "outboundEventsTopic"
    assert endpoint["operands"]["true_value"]["operator"]["operands"]["operand_1"] == "outboundTopic"
    assert endpoint["operands"]["false_value"] == ""
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["outboundEventsTopic"]["value"] == "${OUTBOUND_EVENTS_TOPIC=false}"
    # The app reads exactly this setting (core/settings.py), set only when there is a topic, never with a key.
    app = bicep("function-app.bicep")
    chosen = app["variables"]["outboundEventsSettings"]["value"]["operator"]
    assert chosen["operands"]["condition"]["function"] == {
        "type": "empty",
        "parameters": {"item_to_test": "outboundEventsTopicEndpoint"},
    }
    assert chosen["operands"]["true_value"] == []
    assert chosen["operands"]["false_value"] == [
        {"name": "OUTBOUND_EVENTS_TOPIC_ENDPOINT", "value": "outboundEventsTopicEndpoint"}
    ]
    _, site = the_resource(app, "Microsoft.Web/sites")
    concat = body(site)["properties"]["siteConfig"]["appSettings"]["function"]
    assert "outboundEventsSettings" in concat["parameters"].values()
    assert "OUTBOUND_EVENTS_TOPIC_KEY" not in (INFRA / "modules" / "function-app.bicep").read_text()


def test_outbound_topic_takes_cloudevents_from_the_apps_identity_only() -> None:
    doc = bicep("outbound-topic.bicep")
    _, topic = the_resource(doc, "Microsoft.EventGrid/topics")
    props = body(topic)["properties"]
    assert props["inputSchema"] == "CloudEventSchemaV1_0"
    assert props["disableLocalAuth"] is True
    [sender] = role_assignments(doc)
    assert (sender["role"], sender["principal"], sender["principalType"], sender["scope_type"]) == (
        EVENTGRID_DATA_SENDER,
        "senderPrincipalId",
        "ServicePrincipal",
        "Microsoft.EventGrid/topics",
    )


# --- workbook -----------------------------------------------------------------


def test_azd_up_deploys_the_workbook_over_application_insights() -> None:
    main = bicep("main.bicep")
    module = main["modules"]["workbook"]
    assert module["detail"]["path"] == "modules/workbook.bicep" and condition(module) is None
    source = body(module)["params"]["applicationInsightsId"]["operator"]["operands"]
    assert source["operand_1"] == "monitoring"
    doc = bicep("workbook.bicep")
    _, workbook = the_resource(doc, "Microsoft.Insights/workbooks")
    config = body(workbook)
    assert config["kind"] == "shared"
    props = config["properties"]
    assert props["category"] == "workbook" and props["sourceId"] == "applicationInsightsId"
    assert props["serializedData"]["function"] == {
        "type": "load_text_content",
        "parameters": {"file_path": "workbook.json", "encoding": None},
    }
    serialized = json.loads((MODULES / "workbook.json").read_text())
    assert serialized["version"] == "Notebook/1.0"
    kql = [i["content"] for i in serialized["items"] if i["type"] == 3]
    assert kql and all(c["resourceType"] == "microsoft.insights/components" for c in kql)
    assert all(c["timeContextFromParameter"] == "TimeRange" for c in kql)
