// Every role assignment of the deployment, in one file, so a reviewer sees all grants at once.
//
// Storage: one custom role per identity holding exactly the data actions its binary performs —
// the table "Storage operations and data actions" in infra/README.md, derived from every
// storage call in the code (the built-in Blob/Queue Data Contributor roles also grant container
// and queue create/delete and clear-messages, which no binary uses). Custom roles:
// https://learn.microsoft.com/en-us/azure/role-based-access-control/custom-roles-bicep;
// data actions: https://learn.microsoft.com/en-us/azure/role-based-access-control/permissions/storage.
// Other grants are the least built-in role (Key Vault Secrets User on one secret, Monitoring
// Metrics Publisher on the DCR, AcrPull on the registry). Every grant is scoped to the one queue,
// container, secret, rule or registry it is needed on. tests/tests/suite/infra_bicep.rs proves it.
//
// Creating role definitions needs Microsoft.Authorization/roleDefinitions/write on the resource
// group (Owner or User Access Administrator; see infra/README.md, Prerequisites).

param storageAccountName string
param queueName string
param containerName string
param keyVaultName string

@description('The data collection rule; empty with the legacy sink (no DCR is deployed).')
param dcrName string

@description('Existing container registry in this resource group; empty for none.')
param registryName string

@description('Per collector: { principalId, secretName, grantSecret }.')
param collectorGrants array

param shipperPrincipalId string

@description('The ops job\'s identity (shipper poison commands).')
param opsPrincipalId string

@description('Workspace-key secret of the legacy sink; empty when the legacy sink is not used.')
param shipperWorkspaceKeySecretName string

// Built-in role definition ids (docs/contracts.md §7.2).
var roleIds = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource queue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: queueName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: containerName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource collectorSecrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = [
  for grant in collectorGrants: {
    parent: vault
    name: grant.secretName
  }
]

resource workspaceKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: empty(shipperWorkspaceKeySecretName) ? 'unused' : shipperWorkspaceKeySecretName
}

resource rule 'Microsoft.Insights/dataCollectionRules@2023-03-11' existing = {
  name: empty(dcrName) ? 'unused' : dcrName
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: empty(registryName) ? 'unused' : registryName
}

// ---------------------------------------------------------------- custom storage roles

// Assignments name a custom role by its subscription-level id
// (subscriptionResourceId('Microsoft.Authorization/roleDefinitions', <role>.name)), the form the
// role assignment API takes; the symbolic reference also orders the assignment after the role.

var rgScope = resourceGroup().id
var queueMessages = 'Microsoft.Storage/storageAccounts/queueServices/queues/messages'
var blobs = 'Microsoft.Storage/storageAccounts/blobServices/containers/blobs'

resource collectorStorageRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'okta-sentinel', 'collector-storage')
  properties: {
    roleName: 'okta-sentinel collector storage (${uniqueString(resourceGroup().id)})'
    description: 'okta-sentinel collector: enqueue page envelopes; read, create and overwrite its blobs and lease the leader blob. Nothing else.'
    type: 'CustomRole'
    assignableScopes: [
      rgScope
    ]
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          '${queueMessages}/add/action'
          '${blobs}/read'
          '${blobs}/write'
          '${blobs}/add/action'
        ]
        notDataActions: []
      }
    ]
  }
}

resource shipperStorageRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'okta-sentinel', 'shipper-storage')
  properties: {
    roleName: 'okta-sentinel shipper storage (${uniqueString(resourceGroup().id)})'
    description: 'okta-sentinel shipper: receive, update and delete page envelopes, read the queue length (KEDA); read, create, overwrite, lease and delete its blobs. Nothing else (requeueing poison records is the ops job\'s).'
    type: 'CustomRole'
    assignableScopes: [
      rgScope
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/queueServices/queues/read'
        ]
        notActions: []
        dataActions: [
          '${queueMessages}/process/action'
          '${queueMessages}/write'
          '${blobs}/read'
          '${blobs}/write'
          '${blobs}/add/action'
          '${blobs}/delete'
        ]
        notDataActions: []
      }
    ]
  }
}

resource opsStorageRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'okta-sentinel', 'ops-storage')
  properties: {
    roleName: 'okta-sentinel poison ops storage (${uniqueString(resourceGroup().id)})'
    description: 'okta-sentinel ops job (shipper poison list/show/requeue/purge): read blobs, reset a page state, delete records and pages, enqueue a requeued envelope. Nothing else.'
    type: 'CustomRole'
    assignableScopes: [
      rgScope
    ]
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          '${queueMessages}/add/action'
          '${blobs}/read'
          '${blobs}/write'
          '${blobs}/delete'
        ]
        notDataActions: []
      }
    ]
  }
}

// ---------------------------------------------------------------- collectors

resource collectorQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for grant in collectorGrants: {
    name: guid(queue.id, grant.principalId, 'collector-storage')
    scope: queue
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', collectorStorageRole.name)
      principalId: grant.principalId
      principalType: 'ServicePrincipal'
      description: 'okta-sentinel collector: enqueue page envelopes'
    }
  }
]

// Leader lease, checkpoints, pages (create-only writes).
resource collectorBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for grant in collectorGrants: {
    name: guid(container.id, grant.principalId, 'collector-storage')
    scope: container
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', collectorStorageRole.name)
      principalId: grant.principalId
      principalType: 'ServicePrincipal'
      description: 'okta-sentinel collector: leader lease, checkpoint and page blobs'
    }
  }
]

// Its own org's credential only (a secret-scoped assignment), once the secret exists.
resource collectorSecretUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (grant, i) in collectorGrants: if (grant.grantSecret) {
    name: guid(collectorSecrets[i].id, grant.principalId, roleIds.keyVaultSecretsUser)
    scope: collectorSecrets[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
      principalId: grant.principalId
      principalType: 'ServicePrincipal'
      description: 'okta-sentinel collector: read its Okta org credential'
    }
  }
]

resource collectorAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for grant in collectorGrants: if (!empty(registryName)) {
    name: guid(registry.id, grant.principalId, roleIds.acrPull)
    scope: registry
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.acrPull)
      principalId: grant.principalId
      principalType: 'ServicePrincipal'
      description: 'okta-sentinel collector: pull the image'
    }
  }
]

// ---------------------------------------------------------------- shipper

// Receive, update visibility and delete, and the queue length KEDA reads with this identity.
resource shipperQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, shipperPrincipalId, 'shipper-storage')
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', shipperStorageRole.name)
    principalId: shipperPrincipalId
    principalType: 'ServicePrincipal'
    description: 'okta-sentinel shipper: receive, update and delete page envelopes'
  }
}

// Page blobs, page state and its lease, done/ markers, poison records.
resource shipperBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, shipperPrincipalId, 'shipper-storage')
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', shipperStorageRole.name)
    principalId: shipperPrincipalId
    principalType: 'ServicePrincipal'
    description: 'okta-sentinel shipper: pages, page state, done markers, poison records'
  }
}

// Logs Ingestion API checks Microsoft.Insights/Telemetry/Write on the rule. No DCR (and no
// grant) with the legacy sink.
resource shipperMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(dcrName)) {
  name: guid(rule.id, shipperPrincipalId, roleIds.monitoringMetricsPublisher)
  scope: rule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
    principalId: shipperPrincipalId
    principalType: 'ServicePrincipal'
    description: 'okta-sentinel shipper: post rows to the data collection rule'
  }
}

resource shipperWorkspaceKeyUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(shipperWorkspaceKeySecretName)) {
  name: guid(workspaceKeySecret.id, shipperPrincipalId, roleIds.keyVaultSecretsUser)
  scope: workspaceKeySecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    principalId: shipperPrincipalId
    principalType: 'ServicePrincipal'
    description: 'okta-sentinel shipper: read the workspace key (legacy sink)'
  }
}

resource shipperAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(registryName)) {
  name: guid(registry.id, shipperPrincipalId, roleIds.acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.acrPull)
    principalId: shipperPrincipalId
    principalType: 'ServicePrincipal'
    description: 'okta-sentinel shipper: pull the image'
  }
}

// ---------------------------------------------------------------- ops job (poison commands)

resource opsQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, opsPrincipalId, 'ops-storage')
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', opsStorageRole.name)
    principalId: opsPrincipalId
    principalType: 'ServicePrincipal'
    description: 'okta-sentinel ops job: enqueue a requeued envelope'
  }
}

resource opsBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, opsPrincipalId, 'ops-storage')
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', opsStorageRole.name)
    principalId: opsPrincipalId
    principalType: 'ServicePrincipal'
    description: 'okta-sentinel ops job: list and show poison records, reset a page state, purge'
  }
}

resource opsAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(registryName)) {
  name: guid(registry.id, opsPrincipalId, roleIds.acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.acrPull)
    principalId: opsPrincipalId
    principalType: 'ServicePrincipal'
    description: 'okta-sentinel ops job: pull the image'
  }
}
