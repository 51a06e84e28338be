"""The write-once archive in the parsed templates: version-level immutability on
the recordings container with a default retention policy, the mutable state
container beside it, lifecycle rules that tier only tagged media and delete only
when asked, the customer-managed key option, and the roles on both containers.

Helpers come from test_infra_templates; every value asserted is read from the
templates (or docs/DEPLOY.md for the operator steps).
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

from tests.infra.test_infra_templates import (
    INFRA,
    REPO,
    STORAGE_BLOB_DATA_CONTRIBUTOR,
    app_settings,
    bicep,
    body,
    condition,
    resolve,
    resources,
    role_assignments,
    the_resource,
    walk,
)

KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"
CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
POLICY = "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies"
BLOB_DATA = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/"


def module_output(value: Any) -> tuple[str, str]:
    """`module.outputs.name` as (module, name)."""
    outer = value["operator"]
    assert outer["type"] == "property_accessor"
    inner = outer["operands"]["operand_2"]["operator"]
    assert inner["type"] == "property_accessor"
    assert inner["operands"]["operand_1"] == "outputs"
    return outer["operands"]["operand_1"], inner["operands"]["operand_2"]


def when(value: Any, flag: str) -> Any:
    """The true branch of `flag ? x : ''`, checking the false branch is empty."""
    operator = value["operator"]
    assert operator["type"] == "conditional"
    assert operator["operands"]["condition"] == flag
    assert operator["operands"]["false_value"] == ""
    return operator["operands"]["true_value"]


def decorators(param: dict[str, Any]) -> dict[str, Any]:
    return {d["type"]: d.get("argument") for d in param["decorators"]}


def archive_doc() -> dict[str, Any]:
    return bicep("archive-storage.bicep")


def containers_by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {resolve(doc, body(c)["name"]): c for c in resources(doc, CONTAINER).values()}


def main_params(module: str) -> dict[str, Any]:
    return cast(dict[str, Any], body(bicep("main.bicep")["modules"][module])["params"])


def rules(doc: dict[str, Any]) -> dict[str, Any]:
    """Rule variable names with deleteAfterRetention on and off: {'on': [...], 'off': [...]}."""
    _, policy = the_resource(doc, "Microsoft.Storage/storageAccounts/managementPolicies")
    choice = body(policy)["properties"]["policy"]["rules"]["operator"]
    assert choice["type"] == "conditional"
    assert choice["operands"]["condition"] == "deleteAfterRetention"
    return {"on": choice["operands"]["true_value"], "off": choice["operands"]["false_value"]}


def rule(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(doc["variables"][name]["value"])


# --- versioning and version-level immutability ---------------------------------


def test_versioning_is_on_and_nothing_incompatible_with_version_level_worm() -> None:
    doc = archive_doc()
    _, service = the_resource(doc, "Microsoft.Storage/storageAccounts/blobServices")
    props = body(service)["properties"]
    assert props["isVersioningEnabled"] is True
    # Point-in-time restore and last access tracking are incompatible with immutable storage.
    assert "restorePolicy" not in props
    assert "lastAccessTimeTrackingPolicy" not in props
    # Version-level WORM on the account would also make the state container immutable.
    _, account = the_resource(doc, "Microsoft.Storage/storageAccounts")
    assert "immutableStorageWithVersioning" not in body(account)["properties"]


def test_recordings_container_has_version_level_immutability() -> None:
    doc = archive_doc()
    containers = containers_by_name(doc)
    recordings = body(containers["recordings"])["properties"]
    assert recordings["immutableStorageWithVersioning"] == {"enabled": True}
    assert resolve(doc, "archiveContainerName") == "recordings"


def test_default_retention_policy_is_retention_days_unlocked_without_appends() -> None:
    doc = archive_doc()
    (_symbol, policy), *others = resources(doc, POLICY).items()
    assert not others, "exactly one immutability policy"
    config = body(policy)
    assert config["name"] == "default"
    assert body(doc["resources"][config["parent"]])["name"] == "archiveContainerName"
    props = config["properties"]
    assert props["immutabilityPeriodSinceCreationInDays"] == "retentionDays"
    assert props["allowProtectedAppendWrites"] is False
    assert "allowProtectedAppendWritesAll" not in props
    # ARM creates a policy unlocked and exposes no writable state: the template never locks it.
    assert "state" not in props
    # Once an operator has locked it, ARM can no longer write it: the template leaves it alone.
    assert condition(policy) == {"operator": {"type": "not", "operands": {"bool_value": "retentionPolicyLocked"}}}
    assert resolve(doc, "retentionPolicyLocked") is False


def test_nothing_in_infra_locks_a_policy() -> None:
    for path in sorted(INFRA.rglob("*.bicep")):
        text = path.read_text()
        assert not re.search(r"state:\s*'Locked'", text), path.name
        assert "/lock" not in text, path.name
        assert "deploymentScripts" not in text, path.name


def test_retention_days_default_seven_years_within_azure_limits() -> None:
    for doc in (archive_doc(), bicep("main.bicep")):
        param = doc["parameters"]["retentionDays"]
        assert param["default"] == 2555
        assert decorators(param)["min_value"] == 1
        assert decorators(param)["max_value"] == 146000
    params = main_params("archiveStorage")
    assert params["retentionDays"] == "retentionDays"
    assert params["retentionPolicyLocked"] == "retentionPolicyLocked"
    assert resolve(bicep("main.bicep"), "retentionPolicyLocked") is False
    assert "immutabilityDays" not in bicep("main.bicep")["parameters"]
    assert "immutabilityDays" not in archive_doc()["parameters"]


# --- the state container ---------------------------------------------------------


def test_state_container_exists_private_and_mutable() -> None:
    doc = archive_doc()
    containers = containers_by_name(doc)
    state = containers["recordings-state"]
    assert body(state)["name"] == "stateContainerName"
    assert body(state)["properties"] == {"publicAccess": "None"}
    assert body(containers["eventgrid-deadletter"])["properties"] == {"publicAccess": "None"}
    # The only immutability policy hangs off the recordings container.
    state_symbol = next(s for s, c in resources(doc, CONTAINER).items() if c is state)
    for policy in resources(doc, POLICY).values():
        assert body(policy)["parent"] != state_symbol
    assert resolve(doc, "stateContainerName") != resolve(doc, "archiveContainerName")


def test_state_container_name_flows_from_the_parameter_to_the_app_setting() -> None:
    main = bicep("main.bicep")
    assert resolve(main, "archiveStateContainer") == "recordings-state"
    assert main_params("archiveStorage")["stateContainerName"] == "archiveStateContainer"
    state_output = ("archiveStorage", "stateContainerName")
    assert module_output(main_params("functionApp")["archiveStateContainerName"]) == state_output
    assert module_output(main_params("rbac")["stateContainerName"]) == state_output
    assert module_output(main["outputs"]["ARCHIVE_STATE_CONTAINER"]["value"]) == state_output
    doc = bicep("function-app.bicep")
    assert "archiveStateContainerName" in doc["parameters"]
    settings = app_settings(doc)
    assert settings["ARCHIVE_STATE_CONTAINER"] == "archiveStateContainerName"
    assert settings["ARCHIVE_CONTAINER"] == "archiveContainerName"


# --- lifecycle -------------------------------------------------------------------


def test_every_lifecycle_rule_targets_only_the_recordings_container() -> None:
    doc = archive_doc()
    chosen = rules(doc)
    for name in {*chosen["on"], *chosen["off"]}:
        filters = rule(doc, name)["definition"]["filters"]
        # A container name has no '/', so recordings-state/ and eventgrid-deadletter/ never match.
        assert filters["prefixMatch"] == ["${archiveContainerName}/"], name
        assert filters["blobTypes"] == ["blockBlob"], name
    for other in ("stateContainerName", "deadLetterContainerName"):
        assert not resolve(doc, other).startswith(resolve(doc, "archiveContainerName") + "/")


def test_tiering_rule_moves_only_media_tagged_blobs_and_never_deletes() -> None:
    doc = archive_doc()
    chosen = rules(doc)
    assert chosen["off"] == ["mediaTieringRule"]
    tiering = rule(doc, "mediaTieringRule")
    assert tiering["enabled"] is True
    filters = tiering["definition"]["filters"]
    assert [resolve(doc, tag) for tag in filters["blobIndexMatch"]] == [{"name": "kind", "op": "==", "value": "media"}]
    actions = tiering["definition"]["actions"]
    # Previous versions' tags are not indexed: a version action would not be filtered by the tag.
    assert set(actions) == {"baseBlob"}
    referenced = {node for node in walk(actions) if isinstance(node, str)}
    assert {"coolAction", "archiveAction", "archiveAfterDays"} <= referenced
    assert doc["variables"]["coolAction"]["value"] == {
        "tierToCool": {"daysAfterModificationGreaterThan": "coolAfterDays"}
    }
    assert doc["variables"]["archiveAction"]["value"] == {
        "tierToArchive": {"daysAfterModificationGreaterThan": "archiveAfterDays"}
    }
    assert resolve(doc, "coolAfterDays") < resolve(doc, "archiveAfterDays")
    tiering_nodes = list(walk(tiering)) + list(walk(doc["variables"]["coolAction"]))
    tiering_nodes += list(walk(doc["variables"]["archiveAction"]))
    assert not any(isinstance(node, dict) and "delete" in node for node in tiering_nodes)


def test_delete_rule_only_when_asked_after_retention_plus_margin() -> None:
    doc = archive_doc()
    assert resolve(doc, "deleteAfterRetention") is False
    assert resolve(bicep("main.bicep"), "deleteAfterRetention") is False
    assert main_params("archiveStorage")["deleteAfterRetention"] == "deleteAfterRetention"
    chosen = rules(doc)
    assert chosen["on"] == ["mediaTieringRule", "expireRule"]
    expire = rule(doc, "expireRule")
    assert expire["enabled"] is True
    # Media and evidence alike: no tag filter.
    assert "blobIndexMatch" not in expire["definition"]["filters"]
    assert expire["definition"]["actions"] == {"baseBlob": "expireAction", "version": "expireAction"}
    after = doc["variables"]["expireAction"]["value"]["delete"]["daysAfterCreationGreaterThan"]
    assert after == {
        "operator": {"type": "add", "operands": {"operand_1": "retentionDays", "operand_2": "deleteMarginDays"}}
    }
    margin = resolve(doc, "deleteMarginDays")
    assert isinstance(margin, int) and margin > 0
    # The margin the parameter's description and the guide promise is the one deployed.
    description = decorators(bicep("main.bicep")["parameters"]["deleteAfterRetention"])["description"]
    assert f"{margin} days after retentionDays" in description
    guide = (REPO / "docs" / "DEPLOY.md").read_text()
    assert re.search(rf"`retentionDays` \+ {margin} days", guide)


# --- customer-managed key ----------------------------------------------------------


def test_customer_managed_key_resources_only_when_asked() -> None:
    main = bicep("main.bicep")
    assert resolve(main, "customerManagedKey") is False
    for name, path in (
        ("archiveEncryptionIdentity", "modules/identity.bicep"),
        ("archiveKey", "modules/archive-cmk.bicep"),
    ):
        module = main["modules"][name]
        assert module["detail"]["path"] == path
        assert condition(module) == "customerManagedKey"
    key_params = main_params("archiveKey")
    assert module_output(key_params["vaultName"]) == ("keyVault", "name")
    # The account's own identity, never the app's.
    principal = module_output(when(key_params["encryptionPrincipalId"], "customerManagedKey"))
    assert principal == ("archiveEncryptionIdentity", "principalId")
    storage = main_params("archiveStorage")
    assert storage["customerManagedKey"] == "customerManagedKey"
    assert module_output(when(storage["encryptionIdentityId"], "customerManagedKey")) == (
        "archiveEncryptionIdentity",
        "id",
    )
    assert module_output(when(storage["keyVaultUri"], "customerManagedKey")) == ("archiveKey", "vaultUri")
    assert module_output(when(storage["keyName"], "customerManagedKey")) == ("archiveKey", "keyName")


def test_key_is_rsa_3072_wrap_only_rotated_and_expiring() -> None:
    doc = bicep("archive-cmk.bicep")
    _, key = the_resource(doc, "Microsoft.KeyVault/vaults/keys")
    props = body(key)["properties"]
    assert props["kty"] == "RSA"
    assert resolve(doc, props["keySize"]) == 3072
    assert set(decorators(doc["parameters"]["keySize"])["allowed"]) == {2048, 3072, 4096}
    assert sorted(props["keyOps"]) == ["unwrapKey", "wrapKey"]
    rotation = props["rotationPolicy"]
    assert rotation["attributes"]["expiryTime"] == "P2Y"
    assert {"trigger": {"timeAfterCreate": "P1Y"}, "action": {"type": "rotate"}} in rotation["lifetimeActions"]
    vault = doc["resources"][body(key)["parent"]]
    assert vault["existing"] is True


def test_storage_identity_gets_crypto_service_encryption_user_on_the_key_only() -> None:
    doc = bicep("archive-cmk.bicep")
    (assignment,) = role_assignments(doc)
    assert assignment["role"] == KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER
    assert assignment["scope_type"] == "Microsoft.KeyVault/vaults/keys"
    assert assignment["principal"] == "encryptionPrincipalId"
    assert assignment["principalType"] == "ServicePrincipal"


def test_storage_encryption_references_the_key_when_asked() -> None:
    doc = archive_doc()
    _, account = the_resource(doc, "Microsoft.Storage/storageAccounts")
    config = body(account)
    encryption = config["properties"]["encryption"]["function"]
    assert encryption["type"] == "union"
    assert encryption["parameters"]["arg_1"] == "infrastructureEncryption"
    choice = encryption["parameters"]["arg_2"]["operator"]
    assert choice["type"] == "conditional"
    assert choice["operands"] == {
        "condition": "customerManagedKey",
        "true_value": "customerKeyEncryption",
        "false_value": "platformKeyEncryption",
    }
    # Infrastructure encryption can only be set at creation: it stays the same either way.
    assert resolve(doc, "infrastructureEncryption")["requireInfrastructureEncryption"] is True
    customer = resolve(doc, "customerKeyEncryption")
    assert customer["keySource"] == "Microsoft.Keyvault"
    # No key version: the account follows rotations.
    assert customer["keyvaultproperties"] == {"keyname": "keyName", "keyvaulturi": "keyVaultUri"}
    assert customer["identity"] == {"userAssignedIdentity": "encryptionIdentityId"}
    assert resolve(doc, "platformKeyEncryption") == {"keySource": "Microsoft.Storage"}
    identity = config["identity"]["operator"]
    assert identity["operands"]["condition"] == "customerManagedKey"
    assert identity["operands"]["true_value"] == {
        "type": "UserAssigned",
        "userAssignedIdentities": {"'${encryptionIdentityId}'": {}},
    }
    assert resolve(doc, "customerManagedKey") is False


# --- roles on the two containers ------------------------------------------------------


def test_state_container_gets_blob_data_contributor_on_the_container_only() -> None:
    doc = bicep("rbac.bicep")
    state = [
        a
        for a in role_assignments(doc)
        if a["principal"] == "appPrincipalId"
        and a["scope_type"] == CONTAINER
        and a["scope_name"] == "stateContainerName"
    ]
    assert len(state) == 1
    assert state[0]["role"] == STORAGE_BLOB_DATA_CONTRIBUTOR
    blob_service = doc["resources"][state[0]["scope_parent"]]
    account = doc["resources"][body(blob_service)["parent"]]
    assert body(account)["name"] == "archiveStorageAccountName"


def test_archive_writer_role_creates_reads_and_tags_but_never_deletes() -> None:
    doc = bicep("rbac.bicep")
    _, role = the_resource(doc, "Microsoft.Authorization/roleDefinitions")
    props = body(role)["properties"]
    assert props["type"] == "CustomRole"
    assert props["assignableScopes"] == [
        {
            "function": {
                "type": "resource_group",
                "parameters": {"resource_group_name": None, "subscription_id": None},
                "property_name": "id",
            }
        }
    ]
    (permission,) = props["permissions"]
    assert permission["actions"] == [] and permission["notActions"] == []
    data_actions = resolve(doc, permission["dataActions"])
    assert sorted(data_actions) == sorted(
        BLOB_DATA + action for action in ("read", "write", "add/action", "tags/write")
    )
    for action in data_actions:
        assert "*" not in action and "delete" not in action.lower()
        assert "immutableStorage" not in action and "runAsSuperUser" not in action
    on_archive = [
        a for a in role_assignments(doc) if a["scope_type"] == CONTAINER and a["scope_name"] == "archiveContainerName"
    ]
    assert [(a["principal"], a["role"]) for a in on_archive] == [("appPrincipalId", "custom:archiveWriterRole")]
    assert module_output(bicep("main.bicep")["outputs"]["ARCHIVE_WRITER_ROLE_NAME"]["value"]) == (
        "rbac",
        "archiveWriterRoleName",
    )


# --- azd wiring and the guide ------------------------------------------------------


def test_parameters_file_maps_the_new_settings() -> None:
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["retentionDays"]["value"] == "${ARCHIVE_RETENTION_DAYS=2555}"
    assert params["retentionPolicyLocked"]["value"] == "${ARCHIVE_RETENTION_LOCKED=false}"
    assert params["deleteAfterRetention"]["value"] == "${ARCHIVE_DELETE_AFTER_RETENTION=false}"
    assert params["customerManagedKey"]["value"] == "${ARCHIVE_CUSTOMER_MANAGED_KEY=false}"
    assert "immutabilityDays" not in params


def test_deploy_guide_covers_worm_and_names_every_new_parameter() -> None:
    text = (REPO / "docs" / "DEPLOY.md").read_text()
    assert "## Write-once archive (WORM), retention and legal hold" in text
    for name in (
        "retentionDays",
        "ARCHIVE_RETENTION_DAYS",
        "retentionPolicyLocked",
        "ARCHIVE_RETENTION_LOCKED",
        "deleteAfterRetention",
        "ARCHIVE_DELETE_AFTER_RETENTION",
        "customerManagedKey",
        "ARCHIVE_CUSTOMER_MANAGED_KEY",
        "archiveStateContainer",
        "ARCHIVE_STATE_CONTAINER",
        "az storage container immutability-policy lock",
        "--if-match",
        "az storage blob set-legal-hold",
        "immutableStorage/runAsSuperUser/action",
    ):
        assert name in text, name
    # The old optional-WORM parameter is gone from the parameter table (the upgrade notes may name it).
    assert "| `immutabilityDays`" not in text
    assert "https://learn.microsoft.com/" in text
