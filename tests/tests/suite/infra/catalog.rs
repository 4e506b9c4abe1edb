//! What the validator knows about Azure, as data: the resource type@apiVersion allow-list, the
//! built-in roles with their permissions, the roles that must never be granted, the resource kinds
//! a grant may be scoped to, and the Bicep functions, decorators and column types it accepts.

/// Repository-relative path of the column manifest the shipper uses (the single source of truth).
pub(crate) const MANIFEST: &str = "shipper/manifest/okta_cl.v1.json";

/// Longest custom column name the service accepts: "up to 45 alphanumeric characters and
/// underscores" (https://learn.microsoft.com/en-us/azure/azure-monitor/logs/logs-ingestion-api-overview).
pub(crate) const MAX_COLUMN_NAME: usize = 45;

/// The storage-operation tables kept next to each binary's code, and whose identity runs them.
pub(crate) const OPERATION_TABLES: &[(&str, &str)] = &[
    ("collector", "collector/storage-operations.json"),
    ("shipper", "shipper/storage-operations.json"),
];

/// `type@apiVersion` allowed in the templates (docs/contracts.md §7.1, plus the few extra resource
/// types this deployment uses: lifecycle policy, saved search, alerts, registry).
pub(crate) const ALLOWED_TYPES: &[&str] = &[
    "Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31",
    "Microsoft.Storage/storageAccounts@2023-05-01",
    "Microsoft.Storage/storageAccounts/queueServices@2023-05-01",
    "Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01",
    "Microsoft.Storage/storageAccounts/blobServices@2023-05-01",
    "Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01",
    "Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01",
    "Microsoft.KeyVault/vaults@2023-07-01",
    "Microsoft.KeyVault/vaults/secrets@2023-07-01",
    "Microsoft.OperationalInsights/workspaces@2022-10-01",
    "Microsoft.OperationalInsights/workspaces@2023-09-01",
    "Microsoft.OperationalInsights/workspaces/tables@2022-10-01",
    "Microsoft.OperationalInsights/workspaces/savedSearches@2020-08-01",
    "Microsoft.Insights/dataCollectionEndpoints@2023-03-11",
    "Microsoft.Insights/dataCollectionRules@2023-03-11",
    "Microsoft.Insights/scheduledQueryRules@2023-12-01",
    "Microsoft.Insights/actionGroups@2023-01-01",
    "Microsoft.Authorization/roleAssignments@2022-04-01",
    // Custom roles with exactly each identity's storage data actions (issue 13 §1.9).
    "Microsoft.Authorization/roleDefinitions@2022-04-01",
    "Microsoft.App/managedEnvironments@2024-03-01",
    // 2025-01-01 is the first stable version with azureQueue.identity (docs/contracts.md §6.2).
    "Microsoft.App/containerApps@2025-01-01",
    "Microsoft.App/containerApps@2025-07-01",
    "Microsoft.App/jobs@2024-03-01",
    "Microsoft.ContainerRegistry/registries@2023-07-01",
];

/// A built-in role: its GUID and permissions (Azure built-in roles reference).
pub(crate) struct Role {
    pub name: &'static str,
    pub id: &'static str,
    pub actions: &'static [&'static str],
    pub data_actions: &'static [&'static str],
}

pub(crate) const SQ: &str = "Microsoft.Storage/storageAccounts/queueServices/queues";
pub(crate) const SB: &str = "Microsoft.Storage/storageAccounts/blobServices/containers";

/// The documented built-in roles this validator knows (docs/contracts.md §7.2). Permissions are those
/// of the Azure built-in roles reference; only the roles a grant may use need them.
pub(crate) const ROLES: &[Role] = &[
    Role {
        name: "Storage Queue Data Contributor",
        id: "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        actions: &[
            "Microsoft.Storage/storageAccounts/queueServices/queues/delete",
            "Microsoft.Storage/storageAccounts/queueServices/queues/read",
            "Microsoft.Storage/storageAccounts/queueServices/queues/write",
        ],
        data_actions: &[
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/delete",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/read",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/write",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/add/action",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/process/action",
        ],
    },
    Role {
        name: "Storage Queue Data Message Processor",
        id: "8a0f0c08-91a1-4084-bc3d-661d67233fed",
        actions: &[],
        data_actions: &[
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/read",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/process/action",
        ],
    },
    Role {
        name: "Storage Queue Data Message Sender",
        id: "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
        actions: &[],
        data_actions: &[
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/add/action",
        ],
    },
    Role {
        name: "Storage Queue Data Reader",
        id: "19e7f393-937e-4f77-808e-94535e297925",
        actions: &["Microsoft.Storage/storageAccounts/queueServices/queues/read"],
        data_actions: &["Microsoft.Storage/storageAccounts/queueServices/queues/messages/read"],
    },
    Role {
        name: "Storage Blob Data Contributor",
        id: "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
        actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/delete",
            "Microsoft.Storage/storageAccounts/blobServices/containers/read",
            "Microsoft.Storage/storageAccounts/blobServices/containers/write",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        data_actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/move/action",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
        ],
    },
    Role {
        name: "Storage Blob Data Owner",
        id: "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/*",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        data_actions: &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"],
    },
    Role {
        name: "Storage Blob Data Reader",
        id: "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
        actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/read",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        data_actions: &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"],
    },
    Role {
        name: "Storage Table Data Contributor",
        id: "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
        actions: &[],
        data_actions: &[],
    },
    Role {
        name: "Key Vault Secrets User",
        id: "4633458b-17de-408a-b874-0445c86b69e6",
        actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
    },
    Role {
        name: "Key Vault Secrets Officer",
        id: "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
        actions: &[],
        data_actions: &["Microsoft.KeyVault/vaults/secrets/*"],
    },
    Role {
        name: "Monitoring Metrics Publisher",
        id: "3913510d-42f4-4e42-8a64-420c390055eb",
        actions: &[
            "Microsoft.Insights/Register/Action",
            "Microsoft.Support/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ],
        data_actions: &[
            "Microsoft.Insights/Metrics/Write",
            "Microsoft.Insights/Telemetry/Write",
        ],
    },
    Role {
        name: "Log Analytics Contributor",
        id: "92aaf0da-9dab-42b6-94a3-d43ce8d16293",
        actions: &[],
        data_actions: &[],
    },
    // Reader: read everything at its scope; granted only on the Okta table (audit-access.bicep).
    Role {
        name: "Reader",
        id: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        actions: &["*/read"],
        data_actions: &[],
    },
    Role {
        name: "Log Analytics Reader",
        id: "73c42c96-874c-492b-b04d-ab87d138a893",
        actions: &[
            "*/read",
            "Microsoft.OperationalInsights/workspaces/analytics/query/action",
            "Microsoft.OperationalInsights/workspaces/search/action",
            "Microsoft.Support/*",
        ],
        data_actions: &[],
    },
    Role {
        name: "AcrPull",
        id: "7f951dda-4ed3-4680-a7ca-43fe172d538d",
        actions: &["Microsoft.ContainerRegistry/registries/pull/read"],
        data_actions: &[],
    },
];

/// Roles that must never be granted: they manage access or keys, or everything.
pub(crate) const FORBIDDEN_ROLES: &[(&str, &str)] = &[
    ("Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"),
    ("Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c"),
    (
        "User Access Administrator",
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    ),
    (
        "Storage Account Contributor",
        "17d1049b-9a84-46fb-8f53-869881c3d3ab",
    ),
    (
        "Storage Account Key Operator Service Role",
        "81a9662b-bebf-436f-a333-f67b29880f12",
    ),
];

/// Resource kinds named in the operation tables → the one resource type a grant must be scoped to.
pub(crate) const SCOPES: &[(&str, &str)] = &[
    ("queue", SQ),
    ("blob", SB),
    ("secret", "Microsoft.KeyVault/vaults/secrets"),
    ("dcr", "Microsoft.Insights/dataCollectionRules"),
    ("registry", "Microsoft.ContainerRegistry/registries"),
    // The completeness audit's read access (audit-access.bicep); the workspace scope takes only
    // the query role (rules/roles.rs, audit_reads_the_table_only).
    ("table", "Microsoft.OperationalInsights/workspaces/tables"),
    ("workspace", "Microsoft.OperationalInsights/workspaces"),
];

/// Bicep functions (and `az`/`sys` namespaces) an expression may call.
pub(crate) const FUNCTIONS: &[&str] = &[
    "any",
    "array",
    "base64",
    "bool",
    "coalesce",
    "concat",
    "contains",
    "dateTimeAdd",
    "deployment",
    "empty",
    "endsWith",
    "environment",
    "extensionResourceId",
    "filter",
    "first",
    "format",
    "guid",
    "indexOf",
    "int",
    "items",
    "join",
    "json",
    "last",
    "length",
    "listKeys",
    "loadJsonContent",
    "loadTextContent",
    "map",
    "max",
    "min",
    "objectKeys",
    "range",
    "reduce",
    "reference",
    "replace",
    "resourceGroup",
    "resourceId",
    "skip",
    "split",
    "startsWith",
    "string",
    "subscription",
    "subscriptionResourceId",
    "substring",
    "take",
    "tenant",
    "tenantResourceId",
    "toLower",
    "toUpper",
    "trim",
    "union",
    "uniqueString",
    "uri",
    "utcNow",
];
pub(crate) const DECORATORS: &[&str] = &[
    "allowed",
    "description",
    "discriminator",
    "export",
    "maxLength",
    "maxValue",
    "metadata",
    "minLength",
    "minValue",
    "sealed",
    "secure",
    "batchSize",
];
pub(crate) const NAMESPACES: &[&str] = &["az", "sys"];

pub(crate) const TABLE_TYPES: &[&str] = &[
    "string", "int", "long", "real", "boolean", "datetime", "guid", "dynamic",
];
pub(crate) const STREAM_TYPES: &[&str] = &[
    "string", "int", "long", "real", "boolean", "dynamic", "datetime",
];
