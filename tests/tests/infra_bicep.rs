//! Offline validation of the Bicep deployment (`infra/`): no Bicep CLI exists on these machines,
//! so the validator in `infra/` (parser walk, evaluator, rules) parses the templates with tree-sitter-bicep and checks
//! what can be checked statically. Each check is proven able to fail by running it on a
//! deliberately broken copy of the real files.

#[path = "infra/mod.rs"]
mod infra;

use std::path::{Path, PathBuf};

use infra::{validate, Sources, MANIFEST};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn real() -> Sources {
    Sources::load(&repo_root())
}

/// Asserts that `broken` fails validation with a problem containing `expect`.
fn assert_fails(broken: &Sources, expect: &str) {
    let problems = validate(broken);
    assert!(
        problems.iter().any(|p| p.contains(expect)),
        "expected a problem containing {expect:?}, got {problems:#?}"
    );
}

#[test]
fn the_real_templates_pass() {
    let sources = real();
    for f in [
        "infra/main.bicep",
        "infra/modules/roles.bicep",
        "infra/modules/table.bicep",
        "infra/modules/dcr.bicep",
        "infra/modules/storage.bicep",
        "infra/modules/keyvault.bicep",
        "infra/modules/apps.bicep",
        "infra/modules/alerts.bicep",
    ] {
        assert!(sources.files.contains_key(f), "{f} is missing");
    }
    let problems = validate(&sources);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_syntax_error_fails() {
    let broken = real().mutated(
        "infra/modules/storage.bicep",
        "kind: 'StorageV2'",
        "kind: 'StorageV2' ]",
    );
    let problems = validate(&broken);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("infra/modules/storage.bicep:")
                && (p.contains("syntax error") || p.contains("missing"))),
        "{problems:#?}"
    );
}

#[test]
fn an_unterminated_object_fails() {
    let broken = real().mutated(
        "infra/modules/dcr.bicep",
        "output name string = rule.name",
        "output name string = {",
    );
    assert!(!validate(&broken).is_empty());
}

#[test]
fn an_unknown_role_guid_fails() {
    let broken = real().mutated(
        "infra/modules/roles.bicep",
        "acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'",
        "acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538e'",
    );
    assert_fails(&broken, "is not a documented built-in role");
}

#[test]
fn owner_contributor_and_storage_key_roles_are_refused() {
    for (name, id) in [
        ("Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"),
        ("Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c"),
        (
            "Storage Account Contributor",
            "17d1049b-9a84-46fb-8f53-869881c3d3ab",
        ),
        (
            "User Access Administrator",
            "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        ),
    ] {
        let broken = real().mutated(
            "infra/modules/roles.bicep",
            "blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'",
            &format!("blobDataContributor: '{id}'"),
        );
        assert_fails(
            &broken,
            &format!("role {name} ({id}) must never be granted"),
        );
    }
}

#[test]
fn a_column_missing_from_the_table_fails() {
    // The deployment switch that leaves out the 46-character column, turned on by default.
    let broken = real().mutated(
        "infra/main.bicep",
        "param omitOverlongColumns bool = false",
        "param omitOverlongColumns bool = true",
    );
    assert_fails(
        &broken,
        "table lacks manifest column authenticationContext_authenticationProvider_s",
    );
}

#[test]
fn a_table_built_from_a_stale_manifest_fails() {
    // The table loads an older copy of the manifest that lacks domain_s.
    let mut broken = real();
    let mut stale: serde_json::Value =
        serde_json::from_str(broken.get(MANIFEST)).expect("manifest JSON");
    let cols = stale["columns"].as_array_mut().expect("columns");
    let before = cols.len();
    cols.retain(|c| c["name"] != "domain_s");
    assert_eq!(cols.len() + 1, before, "the manifest has domain_s");
    broken.files.insert(
        "shipper/manifest/okta_cl.v0.json".into(),
        serde_json::to_string(&stale).expect("json"),
    );
    let broken = broken.mutated(
        "infra/modules/table.bicep",
        "okta_cl.v1.json",
        "okta_cl.v0.json",
    );
    assert_fails(&broken, "table lacks manifest column domain_s (string)");
    let problems = validate(&broken);
    assert!(
        !problems.iter().any(|p| p.contains("DCR stream lacks")),
        "only the table is stale: {problems:#?}"
    );
}

#[test]
fn a_dcr_stream_column_with_a_wrong_type_fails() {
    let broken = real().mutated(
        "infra/modules/dcr.bicep",
        "type: column.type",
        "type: column.name == 'domain_s' ? 'dynamic' : (column.type)",
    );
    assert_fails(
        &broken,
        "DCR stream lacks manifest column domain_s (string)",
    );
}

#[test]
fn shared_key_access_on_fails() {
    let broken = real().mutated(
        "infra/modules/storage.bicep",
        "allowSharedKeyAccess: false",
        "allowSharedKeyAccess: true",
    );
    assert_fails(&broken, "allowSharedKeyAccess: false");
}

#[test]
fn key_vault_without_purge_protection_or_rbac_fails() {
    let broken = real().mutated(
        "infra/modules/keyvault.bicep",
        "enableRbacAuthorization: true",
        "enableRbacAuthorization: false",
    );
    assert_fails(&broken, "Key Vault must set enableRbacAuthorization: true");
}

#[test]
fn the_shipper_with_message_processor_instead_of_contributor_fails() {
    let broken = real().mutated(
        "infra/modules/roles.bicep",
        "queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'",
        "queueDataContributor: '8a0f0c08-91a1-4084-bc3d-661d67233fed'",
    );
    // Update Message (keep the message invisible) is what Message Processor cannot do.
    assert_fails(
        &broken,
        "shipper performs Microsoft.Storage/storageAccounts/queueServices/queues/messages/write on the queue",
    );
}

#[test]
fn the_collector_without_its_secret_role_fails() {
    let broken = real().mutated(
        "infra/modules/roles.bicep",
        "scope: collectorSecrets[i]",
        "scope: vault",
    );
    assert_fails(&broken, "scoped to Microsoft.KeyVault/vaults:");
    assert_fails(
        &broken,
        "collector performs Microsoft.KeyVault/vaults/secrets/getSecret/action on the secret",
    );
}

#[test]
fn a_grant_on_the_whole_storage_account_fails() {
    let broken = real().mutated(
        "infra/modules/roles.bicep",
        "scope: container",
        "scope: account",
    );
    assert_fails(&broken, "scoped to Microsoft.Storage/storageAccounts:");
}

#[test]
fn a_role_assignment_without_principal_type_or_guid_name_fails() {
    let broken = real().mutated(
        "infra/modules/roles.bicep",
        "      principalType: 'ServicePrincipal'\n",
        "",
    );
    assert_fails(&broken, "role assignment lacks principalType");
    let broken = real().mutated(
        "infra/modules/roles.bicep",
        "name: guid(rule.id, shipperPrincipalId, roleIds.monitoringMetricsPublisher)",
        "name: 'metrics-publisher'",
    );
    assert_fails(
        &broken,
        "role assignment name must be a deterministic guid(...)",
    );
}

#[test]
fn an_operation_no_role_covers_fails() {
    let broken = real().mutated(
        "collector/storage-operations.json",
        "[\n",
        "[\n  {\"op\": \"Microsoft.Storage/storageAccounts/queueServices/queues/messages/process/action\", \"resource\": \"queue\", \"why\": \"test\"},\n",
    );
    assert_fails(&broken, "collector performs Microsoft.Storage/storageAccounts/queueServices/queues/messages/process/action");
}

#[test]
fn an_undeclared_identifier_fails() {
    let broken = real().mutated(
        "infra/modules/apps.bicep",
        "environmentId: managedEnvironment.id",
        "environmentId: managedEnvironmnt.id",
    );
    assert_fails(&broken, "`managedEnvironmnt` is not declared");
    let broken = real().mutated(
        "infra/modules/alerts.bicep",
        "join(map(appNames",
        "join(mapp(appNames",
    );
    assert_fails(&broken, "unknown function `mapp`");
}

#[test]
fn a_resource_version_outside_the_allow_list_fails() {
    // 2024-03-01 has no azureQueue.identity: KEDA could not authenticate with the identity.
    let broken = real().mutated(
        "infra/modules/apps.bicep",
        "resource shipperApp 'Microsoft.App/containerApps@2025-01-01'",
        "resource shipperApp 'Microsoft.App/containerApps@2024-03-01'",
    );
    assert_fails(
        &broken,
        "\"Microsoft.App/containerApps@2024-03-01\" is not in the allow-list",
    );
}

#[test]
fn a_lifecycle_rule_on_state_fails() {
    let broken = real().mutated(
        "infra/modules/storage.bicep",
        "'${containerName}/pages/'",
        "'${containerName}/state/'",
    );
    assert_fails(&broken, "may only target done/ or pages/");
}

#[test]
fn a_missing_module_file_fails() {
    let mut broken = real();
    broken.files.remove("infra/modules/alerts.bicep");
    assert_fails(&broken, "points at missing infra/modules/alerts.bicep");
}

#[test]
fn text_the_offline_parser_would_misread_fails() {
    // tree-sitter-bicep reads `a ? b : c.d` as `(a ? b : c).d`: such text must be parenthesised.
    let broken = real().mutated(
        "infra/modules/table.bicep",
        "'dateTime' : (column.type)",
        "'dateTime' : column.type",
    );
    assert_fails(&broken, "ambiguous for the offline parser");
}

/// The poison commands need arguments, which `az containerapp exec` cannot pass: a job started
/// by hand runs them, with the shipper's identity, and the operator docs use it.
#[test]
fn the_poison_commands_run_as_a_manual_job_with_the_shippers_identity() {
    let sources = real();
    let apps = &sources.files["infra/modules/apps.bicep"];
    let start = apps
        .find("resource shipperOpsJob 'Microsoft.App/jobs@")
        .expect("a shipper ops job");
    let job = &apps[start..];
    let job = &job[..job.find("\n}\n").expect("end of the job")];
    for needle in [
        "triggerType: 'Manual'",
        "'${shipperIdentityId}': {}",
        "'/usr/local/bin/shipper'",
        "value: shipperIdentityClientId",
        "commonEnv",
    ] {
        assert!(job.contains(needle), "the job lacks {needle:?}:\n{job}");
    }
    let readme = std::fs::read_to_string(repo_root().join("infra/README.md")).expect("README");
    assert!(readme.contains("az containerapp job start"));
    assert!(
        !readme.contains("az containerapp exec -"),
        "exec cannot pass arguments to the poison commands"
    );
}
