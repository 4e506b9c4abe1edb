//! Offline validation of the Bicep deployment (`infra/`): no Bicep CLI exists on these machines,
//! so the validator in `infra/` (parser walk, evaluator, rules) parses the templates with tree-sitter-bicep and checks
//! what can be checked statically. Each check is proven able to fail by running it on a
//! deliberately broken copy of the real files.

use world::support;

use std::path::{Path, PathBuf};

use crate::infra::{validate, Sources, MANIFEST};

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
        "infra/modules/table-read.bicep",
        "infra/modules/table-extend.bicep",
        "infra/modules/dcr.bicep",
        "infra/modules/storage.bicep",
        "infra/modules/keyvault.bicep",
        "infra/modules/apps.bicep",
        "infra/modules/alerts.bicep",
        "infra/modules/audit-access.bicep",
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
            "acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'",
            &format!("acrPull: '{id}'"),
        );
        assert_fails(
            &broken,
            &format!("role {name} ({id}) must never be granted"),
        );
    }
}

#[test]
fn a_column_missing_from_the_table_fails() {
    let broken = real().mutated(
        "infra/modules/table.bicep",
        "for column in manifestColumns: {",
        "for column in filter(manifestColumns, c => (c.name) != 'domain_s'): {",
    );
    assert_fails(&broken, "table lacks manifest column domain_s (string)");
}

#[test]
fn a_dcr_stream_declaring_the_column_the_new_table_leaves_out_fails() {
    // The transform would output a column the table lacks.
    let broken = real().mutated(
        "infra/modules/dcr.bicep",
        "var streamColumns = omitOverlongColumns ? filter(manifest.columns, c => length(c.name) <= 45) : (manifest.columns)",
        "var streamColumns = manifest.columns",
    );
    assert_fails(
        &broken,
        "DCR stream declares authenticationContext_authenticationProvider_s, which the table",
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
fn the_shipper_role_without_update_message_fails() {
    // Update Message keeps a message invisible while its page is worked on.
    let broken = real().mutated(
        "infra/modules/roles.bicep",
        "          '${queueMessages}/write'\n",
        "",
    );
    assert_fails(
        &broken,
        "shipper performs Microsoft.Storage/storageAccounts/queueServices/queues/messages/write on the queue",
    );
    assert_fails(
        &broken,
        "custom role shipperStorageRole (shipper) lacks Microsoft.Storage/storageAccounts/queueServices/queues/messages/write",
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
    assert_fails(&broken, "may only target done/, pages/ or doctor/");
}

#[test]
fn a_storage_account_without_the_doctor_lifecycle_rule_fails() {
    // The collector's doctor probe blobs would pile up under doctor/ for ever.
    let broken = real().mutated(
        "infra/modules/storage.bicep",
        "'${containerName}/doctor/'",
        "'${containerName}/done/'",
    );
    assert_fails(
        &broken,
        "needs an enabled lifecycle rule deleting '<container>/doctor/' blobs",
    );
    let broken = real().mutated(
        "infra/modules/storage.bicep",
        "name: 'expire-doctor-probes'\n          enabled: true",
        "name: 'expire-doctor-probes'\n          enabled: false",
    );
    assert_fails(
        &broken,
        "needs an enabled lifecycle rule deleting '<container>/doctor/' blobs",
    );
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
/// by hand runs them, with its own identity, and the operator docs start it with `--yaml`.
#[test]
fn the_poison_commands_run_as_a_manual_job_with_their_own_identity() {
    let sources = real();
    let apps = &sources.files["infra/modules/apps.bicep"];
    let start = apps
        .find("resource shipperOpsJob 'Microsoft.App/jobs@")
        .expect("a shipper ops job");
    let job = &apps[start..];
    let job = &job[..job.find("\n}\n").expect("end of the job")];
    for needle in [
        "triggerType: 'Manual'",
        "'${opsIdentityId}': {}",
        "'/usr/local/bin/shipper'",
        "value: opsIdentityClientId",
        "commonEnv",
    ] {
        assert!(job.contains(needle), "the job lacks {needle:?}:\n{job}");
    }
    let readme = &sources.files["infra/README.md"];
    assert!(readme.contains("az containerapp job start -g $RG -n $JOB --yaml ops.yaml"));
    assert!(readme.contains("--query properties.template"));
    assert!(
        !readme.contains("az containerapp exec -"),
        "exec cannot pass arguments to the poison commands"
    );
    assert!(
        !readme.lines().any(
            |l| l.trim_start().starts_with("az containerapp job start") && l.contains("--args")
        ),
        "job start --args refuses arguments that start with --"
    );
}

// ------------------------------------------------------------------ issue 13 §1, one per point

#[test]
fn p1_an_alert_that_validates_its_query_at_creation_fails() {
    let broken = real().mutated(
        "infra/modules/alerts.bicep",
        "    windowSize: noRowsWindow\n    skipQueryValidation: true\n",
        "    windowSize: noRowsWindow\n",
    );
    assert_fails(
        &broken,
        "scheduled query rule noRows must set skipQueryValidation: true",
    );
    let broken = real().mutated(
        "infra/modules/alerts.bicep",
        "    windowSize: 'PT15M'\n    skipQueryValidation: true",
        "    windowSize: 'PT15M'\n    skipQueryValidation: false",
    );
    assert_fails(
        &broken,
        "scheduled query rule unhealthy must set skipQueryValidation: true",
    );
}

#[test]
fn p2_a_new_table_declaring_the_46_character_column_by_default_fails() {
    let broken = real().mutated(
        "infra/main.bicep",
        "param overlongColumns string = 'auto'",
        "param overlongColumns string = 'keep'",
    );
    assert_fails(
        &broken,
        "a new table must not declare authenticationContext_authenticationProvider_s (46 characters",
    );
    // `auto` read as "keep everywhere".
    let broken = real().mutated(
        "infra/main.bicep",
        "(overlongColumns == 'auto' && !existingTable)",
        "(overlongColumns == 'auto' && existingTable)",
    );
    assert_fails(
        &broken,
        "a new table must not declare authenticationContext_authenticationProvider_s",
    );
    // `auto` read as "omit everywhere": a migrated table's values would stop arriving.
    let broken = real().mutated(
        "infra/main.bicep",
        "(overlongColumns == 'auto' && !existingTable)",
        "(overlongColumns == 'auto')",
    );
    assert_fails(
        &broken,
        "with existingTable=true and overlongColumns 'auto' the DCR stream must keep authenticationContext_authenticationProvider_s",
    );
}

#[test]
fn p3_a_dcr_region_from_a_free_parameter_fails() {
    let broken = real().mutated(
        "infra/main.bicep",
        "location: createWorkspace ? newWorkspace.location : (existingWorkspace.location)",
        "location: location",
    );
    assert_fails(&broken, "the DCR's location must be its workspace's region");
    let broken = real().mutated(
        "infra/main.bicep",
        "location: createWorkspace ? newWorkspace.location : (existingWorkspace.location)",
        "location: createWorkspace ? newWorkspace.location : location",
    );
    assert_fails(&broken, "the DCR's location must be its workspace's region");
}

#[test]
fn p4_an_existing_table_path_that_deletes_or_retypes_a_column_fails() {
    // Sending only the manifest's columns deletes the migrated table's own columns.
    let broken = real().mutated(
        "infra/modules/table-extend.bicep",
        "columns: concat(kept, added)",
        "columns: wanted",
    );
    assert_fails(
        &broken,
        "the existing-table path deletes column legacyOnly_s",
    );
    // Re-typing the current columns to the manifest's type.
    let broken = real().mutated(
        "infra/modules/table-extend.bicep",
        "var kept = map(currentColumns, c => {\n  name: c.name\n  type: c.type\n})",
        "var kept = map(currentColumns, c => {\n  name: c.name\n  type: 'string'\n})",
    );
    assert_fails(
        &broken,
        "the existing-table path changes the type of published_t from dateTime to string",
    );
    // Adding what exists already declares it twice.
    let broken = real().mutated(
        "infra/modules/table-extend.bicep",
        "var added = filter(wanted, w => !contains(existingNames, toLower(w.name)) && length(w.name) <= 45)",
        "var added = wanted",
    );
    assert_fails(
        &broken,
        "the existing-table path declares published_t 2 times",
    );
    assert_fails(&broken, "re-declares the standard column timegenerated");
    // Not adding what is missing.
    let broken = real().mutated(
        "infra/modules/table-extend.bicep",
        "columns: concat(kept, added)",
        "columns: kept",
    );
    assert_fails(
        &broken,
        "the existing-table path does not add manifest column uuid_g",
    );
}

#[test]
fn p5_a_dcr_based_table_or_dcr_deployed_with_the_legacy_sink_fails() {
    let broken = real().mutated(
        "infra/main.bicep",
        "module dcr 'modules/dcr.bicep' = if (!useLegacySink) {",
        "module dcr 'modules/dcr.bicep' = if (true) {",
    );
    assert_fails(
        &broken,
        "the DCR module dcr is deployed with sink=data-collector",
    );
    let broken = real().mutated(
        "infra/main.bicep",
        "module table 'modules/table.bicep' = if (!useLegacySink && !existingTable) {",
        "module table 'modules/table.bicep' = if (!existingTable) {",
    );
    assert_fails(
        &broken,
        "the DCR-based table module table is deployed with sink=data-collector",
    );
    let broken = real().mutated(
        "infra/modules/roles.bicep",
        "resource shipperMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(dcrName)) {",
        "resource shipperMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {",
    );
    assert_fails(
        &broken,
        "the role assignment on the DCR shipperMetricsPublisher is deployed with sink=data-collector",
    );
}

#[test]
fn p6_a_log_alert_on_a_basic_table_fails() {
    let broken = real().mutated(
        "infra/modules/alerts.bicep",
        "resource noRows 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = if (tablePlan != 'Basic') {",
        "resource noRows 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {",
    );
    assert_fails(
        &broken,
        "log alert noRows reads the Okta table, which tablePlan=Basic does not allow",
    );
}

#[test]
fn p7_a_probe_that_depends_on_the_dependencies_fails() {
    let broken = real().mutated(
        "infra/modules/apps.bicep",
        "    type: 'Readiness'\n    httpGet: {\n      path: '/healthz'",
        "    type: 'Readiness'\n    httpGet: {\n      path: '/readyz'",
    );
    assert_fails(
        &broken,
        "a probe must check the process only (path '/healthz'), not Some(\"/readyz\")",
    );
}

#[test]
fn p8_an_ops_yaml_without_the_jobs_env_or_shape_fails() {
    let broken = real().mutated(
        "infra/shipper-ops.example.yaml",
        "        {\"name\": \"AZURE_CLIENT_ID\", \"value\": \"<client id of id-<prefix>-shipper-ops>\"}\n",
        "        {\"name\": \"OKTA_X\", \"value\": \"x\"}\n",
    );
    assert_fails(&broken, "drops the job's env AZURE_CLIENT_ID");
    assert_fails(&broken, "env OKTA_X is not the job's");
    // A new env variable of the job the example lacks.
    let broken = real().mutated(
        "infra/modules/apps.bicep",
        "              value: opsIdentityClientId\n            }",
        "              value: opsIdentityClientId\n            }\n            {\n              name: 'RUST_LOG'\n              value: 'info'\n            }",
    );
    assert_fails(&broken, "drops the job's env RUST_LOG");
    let broken = real().mutated(
        "infra/shipper-ops.example.yaml",
        "\"name\": \"shipper-ops\"",
        "\"name\": \"ops\"",
    );
    assert_fails(
        &broken,
        "containers[0].name is \"ops\" but the job's is \"shipper-ops\"",
    );
    let broken = real().mutated(
        "infra/shipper-ops.example.yaml",
        "\"args\": [\"poison\", \"requeue\", \"--all\"]",
        "\"args\": [\"run\"]",
    );
    assert_fails(&broken, "containers[0].args must be a poison command");
    let broken = real().mutated(
        "infra/shipper-ops.example.yaml",
        "{\n  \"containers\"",
        "{\n  \"properties\": {},\n  \"containers\"",
    );
    assert_fails(
        &broken,
        "`properties` is not part of a job execution template",
    );
}

#[test]
fn p9_a_storage_role_broader_or_narrower_than_the_operation_table_fails() {
    // The collector never deletes a blob.
    let broken = real().mutated(
        "infra/modules/roles.bicep",
        "          '${blobs}/add/action'\n        ]\n        notDataActions: []\n      }\n    ]\n  }\n}\n\nresource shipperStorageRole",
        "          '${blobs}/add/action'\n          '${blobs}/delete'\n        ]\n        notDataActions: []\n      }\n    ]\n  }\n}\n\nresource shipperStorageRole",
    );
    assert_fails(
        &broken,
        "custom role collectorStorageRole (collector) allows Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete, which no storage operation of the collector needs",
    );
    // The ops job back on a built-in Data Contributor role.
    let broken = real().mutated(
        "infra/modules/roles.bicep",
        "    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', opsStorageRole.name)\n    principalId: opsPrincipalId\n    principalType: 'ServicePrincipal'\n    description: 'okta-sentinel ops job: list",
        "    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')\n    principalId: opsPrincipalId\n    principalType: 'ServicePrincipal'\n    description: 'okta-sentinel ops job: list",
    );
    assert_fails(&broken, "ops gets Storage Blob Data Contributor on a Microsoft.Storage/storageAccounts/blobServices/containers");
    // The README table and the role must move together.
    let broken = real().mutated(
        "infra/README.md",
        "| ops | `poison requeue` (`Queue::send`) | Put Message | `Microsoft.Storage/storageAccounts/queueServices/queues/messages/add/action` |\n",
        "",
    );
    assert_fails(
        &broken,
        "custom role opsStorageRole (ops) allows Microsoft.Storage/storageAccounts/queueServices/queues/messages/add/action, which no storage operation of the ops needs",
    );
}

#[test]
fn p10_a_storage_name_from_an_uncleaned_prefix_fails() {
    let broken = real().mutated(
        "infra/main.bicep",
        "var storageAccountName = take('${cleanPrefix}${suffix}', 24)",
        "var storageAccountName = take('${namePrefix}${suffix}', 24)",
    );
    assert_fails(
        &broken,
        "namePrefix \"Okta-Prod_1\" gives the storage account name",
    );
}

#[test]
fn p10_a_vault_without_create_mode_recover_fails() {
    let broken = real().mutated(
        "infra/modules/keyvault.bicep",
        "    createMode: createMode\n",
        "",
    );
    assert_fails(
        &broken,
        "keyVaultCreateMode='recover' must reach the vault's properties.createMode",
    );
}

#[test]
fn p10_a_public_cloud_host_or_a_missing_audience_fails() {
    let broken = real().mutated(
        "infra/main.bicep",
        "'${registryName}${environment().suffixes.acrLoginServer}'",
        "'${registryName}.azurecr.io'",
    );
    assert_fails(
        &broken,
        "is a public-cloud host: derive it from environment()",
    );
    let broken = real().mutated(
        "infra/modules/apps.bicep",
        "    name: 'AZURE_MONITOR_AUDIENCE'",
        "    name: 'AZURE_MONITOR_AUDIENCE_X'",
    );
    assert_fails(&broken, "the shipper app must set AZURE_MONITOR_AUDIENCE");
}

#[test]
fn p10_apps_before_acr_pull_or_a_dcr_before_its_table_fails() {
    let broken = real().mutated(
        "infra/main.bicep",
        "  // rerun the deployment (infra/README.md, Troubleshooting).\n  dependsOn: [\n    roles\n    auditAccess\n  ]",
        "  // rerun the deployment (infra/README.md, Troubleshooting).",
    );
    assert_fails(
        &broken,
        "module apps pulls images with AcrPull: it must dependsOn [\"roles\", \"auditAccess\"]",
    );
    let broken = real().mutated(
        "infra/main.bicep",
        "  dependsOn: [\n    table\n    tableExtend\n  ]\n}\n\n// ---------------------------------------------------------------- storage",
        "  dependsOn: [\n    table\n  ]\n}\n\n// ---------------------------------------------------------------- storage",
    );
    assert_fails(&broken, "module dcr must dependsOn tableExtend: a DCR created before its table fails with InvalidOutputTable");
}

// ------------------------------------------------------------------ recorded, not just declared

/// The storage requests each binary really makes in an end-to-end run (collector, shipper, and
/// the poison commands the ops job runs), recorded by a counting proxy per binary, are all
/// allowed by that identity's rows of the README operation table — which the custom roles equal
/// (rule 9 above). A kind no permission mapping covers fails too. While the services run, their
/// `/healthz` (probed by Container Apps) answers 200: the main-loop watchdog is fed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_storage_request_of_the_binaries_is_allowed_by_their_roles() -> anyhow::Result<()> {
    use world::local::{LocalWorld, WorldOptions};
    use world::storage_proxy::{permissions_for, CountingProxy};

    let world = LocalWorld::start(WorldOptions {
        okta: support::worlds::okta(131, 800),
        ..WorldOptions::default()
    })
    .await?;
    let blob: std::net::SocketAddr = ([127, 0, 0, 1], world.azurite.blob_port()).into();
    let queue: std::net::SocketAddr = ([127, 0, 0, 1], world.azurite.queue_port()).into();
    let mut proxies = Vec::new();
    for who in ["collector", "shipper", "ops"] {
        let b = CountingProxy::start(blob, "blob").await?;
        let q = CountingProxy::start(queue, "queue").await?;
        let conn = world
            .azurite
            .connection_string_via(Some(b.addr()), Some(q.addr()));
        proxies.push((who, b, q, conn));
    }
    let conn = |who: &str| {
        proxies
            .iter()
            .find(|p| p.0 == who)
            .map(|p| p.3.clone())
            .unwrap_or_default()
    };
    let collector = world.start_collector(
        "collector",
        &[(
            "AZURE_STORAGE_CONNECTION_STRING",
            conn("collector").as_str(),
        )],
    )?;
    let shipper = world.start_shipper(
        "shipper",
        &[("AZURE_STORAGE_CONNECTION_STRING", conn("shipper").as_str())],
    )?;
    let d = world
        .wait_all_landed(std::time::Duration::from_secs(120))
        .await?;
    assert_eq!(d.duplicates, 0, "{d:?}");
    for svc in [&collector, &shipper] {
        let addr = support::health_addr(svc).await;
        let (status, body) = support::http_get(&addr, "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok"), "{addr}");
    }
    // The ops job's commands (no record waits: list and requeue only read).
    let mut env = world.shipper_env();
    env.insert("AZURE_STORAGE_CONNECTION_STRING".into(), conn("ops"));
    for args in [&["poison", "list"][..], &["poison", "requeue", "--all"][..]] {
        let (st, out, err) = world::procs::run_command("shipper", args, &env)?;
        assert!(st.success(), "shipper {args:?}: {out}\n{err}");
    }
    drop((collector, shipper));

    let readme = std::fs::read_to_string(repo_root().join("infra/README.md"))?;
    let table = crate::infra::rules::deployment::operation_table(&readme);
    let mut report = String::new();
    for (who, b, q, _) in &proxies {
        let allowed = table.get(*who).cloned().unwrap_or_default();
        let kinds: Vec<String> = b
            .counts()
            .requests
            .into_keys()
            .chain(q.counts().requests.into_keys())
            // Local runs with an account key create the queue and container first
            // (common::storage::Storage::ensure_created); in Azure the Bicep does.
            .filter(|k| k != "queue PUT queue")
            .collect();
        assert!(!kinds.is_empty(), "no storage request recorded for {who}");
        for kind in &kinds {
            let perms = permissions_for(kind).unwrap_or_else(|| {
                panic!("{who} made `{kind}`, which no permission mapping covers")
            });
            report.push_str(&format!("{who}: {kind} -> {}\n", perms.join(" | ")));
            assert!(
                perms.iter().any(|p| allowed.contains(*p)),
                "{who} made `{kind}`, which needs one of {perms:?}; its role (infra/README.md table) allows {allowed:?}"
            );
        }
    }
    eprintln!("{report}");
    Ok(())
}

#[test]
fn a_doctor_job_missing_or_drifting_from_its_app_fails() {
    // The job's env no longer the app's variable: a setting added to the app would be missing.
    let broken = real().mutated(
        "infra/modules/apps.bicep",
        "          env: shipperEnv\n        }\n      ]\n    }\n  }\n}\n\nresource collectorDoctorJobs",
        "          env: commonEnv\n        }\n      ]\n    }\n  }\n}\n\nresource collectorDoctorJobs",
    );
    assert_fails(
        &broken,
        "doctor job shipperDoctorJob env `commonEnv` is not app shipperApp's env `shipperEnv`",
    );
    // The collector's job under the shipper's identity.
    let broken = real().mutated(
        "infra/modules/apps.bicep",
        "        '${c.identityId}': {}\n      }\n    }\n    properties: {\n      environmentId: managedEnvironment.id\n      configuration: {\n        triggerType: 'Manual'",
        "        '${shipperIdentityId}': {}\n      }\n    }\n    properties: {\n      environmentId: managedEnvironment.id\n      configuration: {\n        triggerType: 'Manual'",
    );
    assert_fails(&broken, "doctor job collectorDoctorJobs runs as");
    // No doctor job for the collectors.
    let broken = real().mutated(
        "infra/modules/apps.bicep",
        "            args: [\n              'doctor'\n            ]",
        "            args: [\n              'run'\n            ]",
    );
    assert_fails(&broken, "app collectorApps has no manual doctor job");
}

#[test]
fn a_workspace_wide_read_role_for_the_collector_fails() {
    // Reader on the whole workspace instead of the Okta table: every table becomes readable.
    let broken = real().mutated(
        "infra/modules/audit-access.bicep",
        "    name: guid(table.id, grant.principalId, readerRoleId)\n    scope: table",
        "    name: guid(table.id, grant.principalId, readerRoleId)\n    scope: workspace",
    );
    assert_fails(
        &broken,
        "the collector gets Reader on Microsoft.OperationalInsights/workspaces",
    );
    // Log Analytics Reader, at any scope.
    let broken = real().mutated(
        "infra/modules/audit-access.bicep",
        "var readerRoleId = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'",
        "var readerRoleId = '73c42c96-874c-492b-b04d-ab87d138a893'",
    );
    assert_fails(&broken, "the collector gets Log Analytics Reader");
    // The query role reading table data by itself.
    let broken = real().mutated(
        "infra/modules/audit-access.bicep",
        "          'Microsoft.OperationalInsights/workspaces/query/read'\n",
        "          'Microsoft.OperationalInsights/workspaces/query/read'\n          'Microsoft.OperationalInsights/workspaces/query/*/read'\n",
    );
    assert_fails(&broken, "the audit may read the Okta table only");
}

#[test]
fn a_container_size_the_consumption_plan_refuses_fails() {
    // An allowed vCPU value without a pair (every allowed value is deployed in turn).
    let broken = real().mutated("infra/main.bicep", "  '0.75'\n", "  '0.3'\n");
    assert_fails(
        &broken,
        "with shipperCpu=\"0.3\": infra/modules/apps.bicep: shipperApp: cannot evaluate",
    );
    // A memory that is not the vCPU's pair, for one allowed value only.
    let broken = real().mutated(
        "infra/modules/apps.bicep",
        "  '1.5': '3.0Gi'\n",
        "  '1.5': '2.0Gi'\n",
    );
    assert_fails(
        &broken,
        "with shipperCpu=\"1.5\": infra/modules/apps.bicep: shipperApp: 1.5 vCPU / 2 GiB is not a consumption-plan pair",
    );
    // More than a Consumption-only environment gives one app.
    let broken = real().mutated("infra/main.bicep", "  '2.0'\n])", "  '2.0'\n  '2.5'\n])");
    assert_fails(&broken, "with shipperCpu=\"2.5\"");
    // A fixed size off the table on a job.
    let broken = real().mutated(
        "infra/modules/apps.bicep",
        "          args: [\n            'poison'\n            'list'\n          ]\n          resources: {\n            cpu: json('0.25')\n            memory: '0.5Gi'",
        "          args: [\n            'poison'\n            'list'\n          ]\n          resources: {\n            cpu: json('0.25')\n            memory: '1Gi'",
    );
    assert_fails(
        &broken,
        "shipperOpsJob: 0.25 vCPU / 1 GiB is not a consumption-plan pair",
    );
    // No @allowed list: any string could be asked for.
    let broken = real().mutated(
        "infra/main.bicep",
        "@allowed([\n  '0.25'",
        "@metadata({ sizes: [\n  '0.25'",
    );
    let broken = broken.mutated("infra/main.bicep", "  '2.0'\n])", "  '2.0'\n]})");
    assert_fails(
        &broken,
        "param shipperCpu must list its sizes with @allowed",
    );
}

#[test]
fn a_container_app_or_job_name_azure_refuses_fails() {
    // 33 characters with the 13-character suffix.
    let broken = real().mutated(
        "infra/modules/apps.bicep",
        "name: 'shipper-doctor-${suffix}'",
        "name: 'shipper-doctor-checks-${suffix}'",
    );
    assert_fails(
        &broken,
        "shipperDoctorJob: the name \"shipper-doctor-checks-",
    );
    // A per-org job named after the domain (dots, and too long for a long domain).
    let broken = real().mutated(
        "infra/modules/apps.bicep",
        "name: 'coldoc-${uniqueString(c.domain, suffix)}'",
        "name: 'coldoc-${c.domain}'",
    );
    assert_fails(
        &broken,
        "collectorDoctorJobs: the name \"coldoc-a-rather-long",
    );
    // A double hyphen from an empty part.
    let broken = real().mutated(
        "infra/modules/apps.bicep",
        "name: 'shipper-ops-${suffix}'",
        "name: 'shipper--${suffix}'",
    );
    assert_fails(&broken, "it must not contain '--'");
}
