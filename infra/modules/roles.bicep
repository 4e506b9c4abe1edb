// Every role assignment of the deployment, in one file, so a reviewer sees all grants at once.
// Each is the least built-in role that covers what the binary does (the tables kept next to the
// code: collector/storage-operations.json, shipper/storage-operations.json) and is scoped to the
// one queue, container, secret or rule it is needed on. tests/tests/infra_bicep.rs proves both.

param storageAccountName string
param queueName string
param containerName string
param keyVaultName string
param dcrName string

@description('Existing container registry in this resource group; empty for none.')
param registryName string

@description('Per collector: { principalId, secretName, grantSecret }.')
param collectorGrants array

param shipperPrincipalId string

@description('Workspace-key secret of the legacy sink; empty when the legacy sink is not used.')
param shipperWorkspaceKeySecretName string

// Built-in role definition ids (contracts.md §7.2).
var roleIds = {
  queueMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
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
  name: dcrName
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: empty(registryName) ? 'unused' : registryName
}

// ---------------------------------------------------------------- collectors

// Put Message only: the collector cannot read, delete or update messages.
resource collectorQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for grant in collectorGrants: {
    name: guid(queue.id, grant.principalId, roleIds.queueMessageSender)
    scope: queue
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.queueMessageSender)
      principalId: grant.principalId
      principalType: 'ServicePrincipal'
      description: 'okta-sentinel collector: enqueue page envelopes'
    }
  }
]

// Leader lease, checkpoints, pages (create-only writes), reset.
resource collectorBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for grant in collectorGrants: {
    name: guid(container.id, grant.principalId, roleIds.blobDataContributor)
    scope: container
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.blobDataContributor)
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

// Receive, update visibility, delete and requeue (Message Processor cannot update messages),
// and the queue length KEDA reads with this identity.
resource shipperQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, shipperPrincipalId, roleIds.queueDataContributor)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.queueDataContributor)
    principalId: shipperPrincipalId
    principalType: 'ServicePrincipal'
    description: 'okta-sentinel shipper: receive, update, delete and requeue page envelopes'
  }
}

// Page blobs, page state and its lease, done/ markers, poison records.
resource shipperBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, shipperPrincipalId, roleIds.blobDataContributor)
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.blobDataContributor)
    principalId: shipperPrincipalId
    principalType: 'ServicePrincipal'
    description: 'okta-sentinel shipper: pages, page state, done markers, poison records'
  }
}

// Logs Ingestion API checks Microsoft.Insights/Telemetry/Write on the rule.
resource shipperMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
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
