// okta-sentinel: Okta System Log → Microsoft Sentinel on Azure Container Apps.
//
// One resource-group deployment creates everything the two services need, and nothing more:
// storage (queue + container, shared keys off), Key Vault (RBAC mode), the DCR-based table and
// its data collection rule, one collector app per Okta org, the shipper app scaled by KEDA on the
// queue, least-privilege role assignments (all of them in modules/roles.bicep) and alerts.
// Operator guide: infra/README.md.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------- types

@description('One Okta org to collect from.')
type oktaOrg = {
  @description('Okta host only, without scheme or path, e.g. acme.okta.com.')
  domain: string

  @description('token = SSWS API token; oauth = OAuth 2.0 service app with private_key_jwt (scope okta.logs.read).')
  auth: 'token' | 'oauth'

  @description('OAuth service app client id (auth = oauth only).')
  clientId: string?

  @description('Key id (kid) of the OAuth private key, if the app has several keys.')
  keyId: string?

  @description('Where a brand-new checkpoint starts: RFC 3339, a duration back such as 1h, or a saved next link of this org (https://<domain>/api/v1/logs?after=…, e.g. the one Microsoft\'s Function connector kept) to migrate without gap or overlap. Ignored once a checkpoint exists.')
  start: string?

  @description('Allow a start more than 48 h back (Azure restamps TimeGenerated older than 2 days, so scheduled rules see old events as new).')
  allowRestamp: bool?

  @description('Set to true once the credential secret exists in the vault (set by hand after the first deployment) so the collector is granted read access to it.')
  credentialInVault: bool?
}

// ---------------------------------------------------------------- parameters

@description('Azure region for every resource (defaults to the resource group\'s).')
param location string = resourceGroup().location

@description('Short prefix for resource names (letters and digits; it is lower-cased and stripped of - _ . for the storage account and vault names, which allow only those).')
@minLength(2)
@maxLength(10)
param namePrefix string = 'okta'

@description('The Okta orgs to collect: one collector app and one identity per org.')
@minLength(1)
param oktaOrgs oktaOrg[]

@description('Optional Okta credentials keyed by org domain: the SSWS token (auth = token) or the private key as PEM or JWK (auth = oauth). Each is stored in Key Vault; leave empty to set them later with az keyvault secret set.')
@secure()
param oktaCredentials object = {}

@description('Container image holding both binaries (collector and shipper), e.g. myacr.azurecr.io/okta-sentinel:1.0.0.')
param image string

@description('Name of an existing Azure Container Registry in this resource group to pull the image from with the apps\' identities (AcrPull); empty for a public registry.')
param registryName string = ''

@description('Resource id of an existing Log Analytics workspace (Sentinel-enabled); empty creates a new workspace.')
param existingWorkspaceResourceId string = ''

@description('Retention of a newly created workspace, in days.')
@minValue(30)
@maxValue(730)
param workspaceRetentionInDays int = 90

@description('Name of the DCR-based custom table the rows go to.')
param tableName string = 'Okta_CL'

@description('Table plan: Analytics (full KQL, analytic rules) or Basic (cheaper, limited queries; Sentinel analytic rules do not run on it).')
@allowed([
  'Analytics'
  'Basic'
])
param tablePlan string = 'Analytics'

@description('Interactive retention of the table in days (-1 = the workspace default). Analytics plan only.')
param tableRetentionInDays int = -1

@description('Total retention (interactive + long-term) of the table in days (-1 = same as interactive).')
param tableTotalRetentionInDays int = -1

@description('The table already exists and this deployment did not create it: a classic Okta_CL migrated to DCR-based (az monitor log-analytics workspace table migrate). A table an earlier run of this template created is redeployed with false (the template owns its schema). The deployment then reads its schema and only ADDS missing manifest columns: it never deletes a column or changes a type (a PUT of the schema replaces the custom column set). See infra/README.md, "Existing table".')
param existingTable bool = false

@description('Columns whose names exceed the documented 45 characters (authenticationContext_authenticationProvider_s, 46): auto = omit on a new table, keep on an existing (migrated) one; keep = always declare; omit = never declare. An omitted column\'s values stay in the row\'s additionalFields_s (see the manifest notes). See infra/README.md, "The 46-character column".')
@allowed([
  'auto'
  'keep'
  'omit'
])
param overlongColumns string = 'auto'

@description('Drop Okta DEBUG events in the data collection rule to save ingestion cost.')
param dropDebugEvents bool = false

@description('KQL function alias giving analysts a view de-duplicated by uuid_g.')
param dedupFunctionAlias string = 'OktaSentinel_Dedup'

@description('Which sink the shipper uses: logs-ingestion (DCR, default) or data-collector (legacy HTTP Data Collector API, for classic tables).')
@allowed([
  'logs-ingestion'
  'data-collector'
])
param sink string = 'logs-ingestion'

@description('Minimum shipper replicas (0 lets KEDA scale to zero when the queue is empty).')
@minValue(0)
param shipperMinReplicas int = 1

@description('Maximum shipper replicas.')
@minValue(1)
@maxValue(300)
param shipperMaxReplicas int = 10

// The consumption plan accepts only fixed vCPU/memory pairs (1 vCPU : 2 GiB), and a
// Consumption-only environment at most 2 vCPU / 4 GiB per app
// (https://learn.microsoft.com/en-us/azure/container-apps/containers#allocations). The memory
// follows from the vCPU (apps.bicep), so a pair the plan refuses cannot be asked for.
@description('vCPU per shipper replica; its memory is twice that in GiB. Billing is on what is allocated: 0.25 is ample when caught up, raise it (or shipperMaxReplicas) for faster backfills.')
@allowed([
  '0.25'
  '0.5'
  '0.75'
  '1.0'
  '1.25'
  '1.5'
  '1.75'
  '2.0'
])
param shipperCpu string = '0.25'

@description('Target queue messages (pages) per shipper replica for the KEDA azure-queue rule.')
@minValue(1)
param shipperQueueLength int = 8

@description('Pages in flight per shipper replica (SHIPPER_CONCURRENCY).')
@minValue(1)
param shipperConcurrency int = 4

@description('Page-caused failures before a page becomes a poison record (SHIPPER_MAX_DEQUEUE).')
@minValue(1)
param shipperMaxDequeue int = 5

@description('Fraction of each Okta rate-limit window the collector never uses (OKTA_RATE_LIMIT_RESERVE).')
param oktaRateLimitReserve string = '0.3'

@description('Seconds a stopping replica gets to finish or hand back the page in flight.')
@minValue(30)
@maxValue(600)
param terminationGracePeriodSeconds int = 120

@description('Days after which done/ markers are deleted (never less than 30: they stop twin envelopes from being shipped twice).')
@minValue(30)
param doneMarkerRetentionDays int = 30

@description('Days after which orphan pages/ blobs (written but never enqueued) are deleted; kept well beyond Okta\'s 90-day retention.')
@minValue(120)
param orphanPageRetentionDays int = 180

@description('Alert when no new rows arrived in the table for this ISO 8601 window.')
param noRowsAlertWindow string = 'PT1H'

@description('Key Vault create mode: default, or recover to bring back a soft-deleted vault of the same name (purge protection keeps the name reserved for 90 days).')
@allowed([
  'default'
  'recover'
])
param keyVaultCreateMode string = 'default'

@description('E-mail address for alerts; empty creates the alert rules without an action group.')
param alertEmail string = ''

@description('Completeness audit (infra/README.md "Proof of completeness"): give each collector read access to the Okta table only and LOG_ANALYTICS_WORKSPACE_ID. false: no grant, AUDIT_ENABLED=false.')
param auditEnabled bool = true

@description('Tags applied to every resource.')
param tags object = {}

// ---------------------------------------------------------------- names

var suffix = uniqueString(resourceGroup().id)
// Storage account names are 3-24 lower-case letters and digits, vault names 3-24 letters, digits
// and single hyphens (https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/resource-name-rules):
// both are built from a cleaned prefix and the 13-character uniqueString, whatever namePrefix holds.
var cleanPrefix = toLower(replace(replace(replace(namePrefix, '-', ''), '_', ''), '.', ''))
var storageAccountName = take('${cleanPrefix}${suffix}', 24)
var keyVaultName = take('kv-${cleanPrefix}-${suffix}', 24)
var queueName = 'okta-pages'
var containerName = 'okta-sentinel'
var streamName = 'Custom-${tableName}'
var workspaceKeySecretName = 'workspace-key'
var useLegacySink = sink == 'data-collector'
var createWorkspace = empty(existingWorkspaceResourceId)
var workspaceId = createWorkspace ? newWorkspace.id : existingWorkspaceResourceId
var workspaceSubscriptionId = createWorkspace ? subscription().subscriptionId : (split(existingWorkspaceResourceId, '/')[2])
var workspaceResourceGroup = createWorkspace ? resourceGroup().name : (split(existingWorkspaceResourceId, '/')[4])
var workspaceName = createWorkspace ? '${namePrefix}-law-${suffix}' : last(split(existingWorkspaceResourceId, '/'))
// auto: a new table must not declare a column over 45 characters (the service refuses it); a
// migrated classic table already has it and keeps it.
var omitOverlongColumns = overlongColumns == 'omit' || (overlongColumns == 'auto' && !existingTable)
// The Logs Ingestion audience of the cloud being deployed to: environment() names the cloud but
// has no monitor endpoint (https://learn.microsoft.com/en-us/azure/azure-resource-manager/bicep/bicep-functions-deployment#environment).
var monitorAudience = environment().name =~ 'AzureChinaCloud'
  ? 'https://monitor.azure.cn'
  : (environment().name =~ 'AzureUSGovernment' ? 'https://monitor.azure.us' : 'https://monitor.azure.com')

// The org key of docs/design.md §2 with dots as dashes: the default Key Vault secret names of §3.
var orgs = [
  for org in oktaOrgs: {
    domain: toLower(org.domain)
    auth: org.auth
    clientId: org.?clientId ?? ''
    keyId: org.?keyId ?? ''
    start: org.?start ?? ''
    allowRestamp: org.?allowRestamp ?? false
    secretName: org.auth == 'token'
      ? 'okta-${replace(toLower(org.domain), '.', '-')}-token'
      : 'okta-${replace(toLower(org.domain), '.', '-')}-private-key'
    credentialSupplied: !empty(oktaCredentials[?org.domain] ?? '')
    credentialInVault: org.?credentialInVault ?? false
  }
]

// ---------------------------------------------------------------- identities

// One identity per collector app, so an org's collector can read only its own org's secret.
resource collectorIdentities 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = [
  for org in orgs: {
    name: 'id-${namePrefix}-collector-${replace(org.domain, '.', '-')}'
    location: location
    tags: tags
  }
]

resource shipperIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${namePrefix}-shipper'
  location: location
  tags: tags
}

// The ops job's own identity: only what the poison commands do (list, show, requeue, purge).
resource opsIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${namePrefix}-shipper-ops'
  location: location
  tags: tags
}

// ---------------------------------------------------------------- workspace

resource newWorkspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' = if (createWorkspace) {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: workspaceRetentionInDays
  }
}

// The workspace as it is, for its region: a DCR must be in its destination workspace's region
// (https://learn.microsoft.com/en-us/azure/azure-monitor/essentials/data-collection-rule-overview).
resource existingWorkspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroup)
}

// The DCR-based table, the DCR and its role exist only for the Logs Ingestion sink: with the
// legacy Data Collector sink the table must stay classic (after migration that API creates no
// new columns, and posts to a DCR-based table can be refused).

// A new table: PUT with the manifest's columns.
module table 'modules/table.bicep' = if (!useLegacySink && !existingTable) {
  name: 'okta-table'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroup)
  params: {
    workspaceName: workspaceName
    tableName: tableName
    tablePlan: tablePlan
    retentionInDays: tableRetentionInDays
    totalRetentionInDays: tableTotalRetentionInDays
    omitOverlongColumns: omitOverlongColumns
    dedupFunctionAlias: dedupFunctionAlias
  }
  dependsOn: [
    newWorkspace
  ]
}

// An existing table: its current schema is read first (a separate deployment, so the PUT that
// follows is not a reference to itself) and only missing columns are added.
module currentTable 'modules/table-read.bicep' = if (!useLegacySink && existingTable) {
  name: 'okta-table-read'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroup)
  params: {
    workspaceName: workspaceName
    tableName: tableName
  }
}

module tableExtend 'modules/table-extend.bicep' = if (!useLegacySink && existingTable) {
  name: 'okta-table-extend'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroup)
  params: {
    workspaceName: workspaceName
    tableName: tableName
    current: existingTable ? (currentTable.outputs.table) : {}
    omitOverlongColumns: omitOverlongColumns
    dedupFunctionAlias: dedupFunctionAlias
  }
}

// Created after its table: a DCR whose output table does not exist (yet) fails with
// InvalidOutputTable; rerunning the deployment after the table exists fixes it.
module dcr 'modules/dcr.bicep' = if (!useLegacySink) {
  name: 'okta-dcr'
  params: {
    location: createWorkspace ? newWorkspace.location : (existingWorkspace.location)
    tags: tags
    name: '${namePrefix}-dcr-${suffix}'
    workspaceResourceId: workspaceId
    streamName: streamName
    dropDebugEvents: dropDebugEvents
    omitOverlongColumns: omitOverlongColumns
  }
  dependsOn: [
    table
    tableExtend
  ]
}

// ---------------------------------------------------------------- storage and secrets

module storage 'modules/storage.bicep' = {
  name: 'okta-storage'
  params: {
    location: location
    tags: tags
    name: storageAccountName
    queueName: queueName
    containerName: containerName
    doneMarkerRetentionDays: doneMarkerRetentionDays
    orphanPageRetentionDays: orphanPageRetentionDays
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'okta-keyvault'
  params: {
    location: location
    tags: tags
    name: keyVaultName
    secretNames: [for org in orgs: org.secretName]
    secretDomains: [for org in orgs: org.domain]
    oktaCredentials: oktaCredentials
    workspaceKeySecretName: useLegacySink ? workspaceKeySecretName : ''
    createMode: keyVaultCreateMode
    workspaceName: workspaceName
    workspaceSubscriptionId: workspaceSubscriptionId
    workspaceResourceGroup: workspaceResourceGroup
  }
  dependsOn: [
    newWorkspace
  ]
}

// ---------------------------------------------------------------- access (every grant is in roles.bicep)

module roles 'modules/roles.bicep' = {
  name: 'okta-roles'
  params: {
    storageAccountName: storage.outputs.accountName
    queueName: queueName
    containerName: containerName
    keyVaultName: vault.outputs.name
    dcrName: useLegacySink ? '' : (dcr.outputs.name)
    registryName: registryName
    collectorGrants: [
      for (org, i) in orgs: {
        principalId: collectorIdentities[i].properties.principalId
        secretName: org.secretName
        grantSecret: org.credentialSupplied || (org.credentialInVault)
      }
    ]
    shipperPrincipalId: shipperIdentity.properties.principalId
    opsPrincipalId: opsIdentity.properties.principalId
    shipperWorkspaceKeySecretName: useLegacySink ? workspaceKeySecretName : ''
  }
}

// The completeness audit's read access: the Okta table only, in the workspace's resource group
// (table-level read access, https://learn.microsoft.com/azure/azure-monitor/logs/manage-table-access).
module auditAccess 'modules/audit-access.bicep' = if (auditEnabled) {
  name: 'okta-audit-access'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroup)
  params: {
    workspaceName: workspaceName
    tableName: tableName
    collectorGrants: [
      for (org, i) in orgs: {
        principalId: collectorIdentities[i].properties.principalId
      }
    ]
  }
  dependsOn: [
    table
    tableExtend
  ]
}

// ---------------------------------------------------------------- apps

module apps 'modules/apps.bicep' = {
  name: 'okta-apps'
  params: {
    location: location
    tags: tags
    namePrefix: namePrefix
    suffix: suffix
    image: image
    registryServer: empty(registryName) ? '' : '${registryName}${environment().suffixes.acrLoginServer}'
    workspaceName: workspaceName
    workspaceSubscriptionId: workspaceSubscriptionId
    workspaceResourceGroup: workspaceResourceGroup
    storageAccountName: storage.outputs.accountName
    queueEndpoint: storage.outputs.queueEndpoint
    blobEndpoint: storage.outputs.blobEndpoint
    queueName: queueName
    containerName: containerName
    keyVaultUrl: vault.outputs.uri
    collectors: [
      for (org, i) in orgs: {
        domain: org.domain
        auth: org.auth
        clientId: org.clientId
        keyId: org.keyId
        start: org.start
        allowRestamp: org.allowRestamp
        secretName: org.secretName
        identityId: collectorIdentities[i].id
        identityClientId: collectorIdentities[i].properties.clientId
      }
    ]
    shipperIdentityId: shipperIdentity.id
    shipperIdentityClientId: shipperIdentity.properties.clientId
    opsIdentityId: opsIdentity.id
    opsIdentityClientId: opsIdentity.properties.clientId
    sink: sink
    monitorAudience: monitorAudience
    logsIngestionEndpoint: useLegacySink ? '' : (dcr.outputs.logsIngestionEndpoint)
    dcrImmutableId: useLegacySink ? '' : (dcr.outputs.immutableId)
    streamName: streamName
    workspaceKeySecretName: workspaceKeySecretName
    shipperMinReplicas: shipperMinReplicas
    shipperMaxReplicas: shipperMaxReplicas
    shipperCpu: shipperCpu
    shipperQueueLength: shipperQueueLength
    shipperConcurrency: shipperConcurrency
    shipperMaxDequeue: shipperMaxDequeue
    oktaRateLimitReserve: oktaRateLimitReserve
    terminationGracePeriodSeconds: terminationGracePeriodSeconds
    auditWorkspaceId: auditEnabled ? existingWorkspace.properties.customerId : ''
  }
  // The images are pulled with AcrPull, which must exist before the first revision starts
  // (https://learn.microsoft.com/en-us/azure/container-apps/managed-identity-image-pull). A new
  // assignment can still take minutes to propagate: if the first revision fails to pull,
  // rerun the deployment (infra/README.md, Troubleshooting).
  dependsOn: [
    roles
    auditAccess
  ]
}

// ---------------------------------------------------------------- alerts

module alerts 'modules/alerts.bicep' = {
  name: 'okta-alerts'
  params: {
    location: location
    tags: tags
    namePrefix: namePrefix
    workspaceResourceId: workspaceId
    tableName: tableName
    // An existing table keeps its plan: the alerts follow the plan it really has.
    tablePlan: (!useLegacySink && existingTable) ? (currentTable.outputs.plan) : tablePlan
    noRowsWindow: noRowsAlertWindow
    alertEmail: alertEmail
    appNames: concat(apps.outputs.collectorAppNames, [apps.outputs.shipperAppName])
  }
  dependsOn: [
    table
    tableExtend
  ]
}

// ---------------------------------------------------------------- outputs

output storageAccountName string = storage.outputs.accountName
output queueEndpoint string = storage.outputs.queueEndpoint
output blobEndpoint string = storage.outputs.blobEndpoint
output keyVaultUrl string = vault.outputs.uri
output workspaceResourceId string = workspaceId
output dcrImmutableId string = useLegacySink ? '' : (dcr.outputs.immutableId)
output logsIngestionEndpoint string = useLegacySink ? '' : (dcr.outputs.logsIngestionEndpoint)
// Existing table: manifest columns the table already has with another type (kept as they are;
// the shipper's values for them may be refused or dropped — see infra/README.md).
output tableTypeConflicts array = (!useLegacySink && existingTable) ? (tableExtend.outputs.typeConflicts) : []
output streamName string = streamName
output collectorApps array = [
  for (org, i) in orgs: {
    domain: org.domain
    app: apps.outputs.collectorAppNames[i]
    identityClientId: collectorIdentities[i].properties.clientId
    credentialSecretName: org.secretName
  }
]
output shipperApp string = apps.outputs.shipperAppName
output shipperOpsJob string = apps.outputs.shipperOpsJobName
output shipperIdentityClientId string = shipperIdentity.properties.clientId
output opsIdentityClientId string = opsIdentity.properties.clientId
