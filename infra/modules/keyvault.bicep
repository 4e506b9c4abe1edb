// Key Vault in RBAC mode holding one credential secret per Okta org and, for the legacy sink
// only, the workspace key. The services read the vault themselves (KEY_VAULT_URL + secret
// names), so a rotated secret is picked up on the next 401 without a restart.

param location string
param tags object
param name string

@description('Secret name per org (same order as secretDomains).')
param secretNames array

@description('Org domain per secret, the key into oktaCredentials.')
param secretDomains array

@secure()
param oktaCredentials object

@description('default, or recover: bring back a soft-deleted vault of this name (https://learn.microsoft.com/en-us/azure/templates/microsoft.keyvault/vaults, properties.createMode).')
@allowed([
  'default'
  'recover'
])
param createMode string

@description('Name of the workspace-key secret for the legacy sink; empty when it is not used.')
param workspaceKeySecretName string

param workspaceName string
param workspaceSubscriptionId string
param workspaceResourceGroup string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    createMode: createMode
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

// A secret is written only when a non-empty value is supplied, so a redeployment without the value
// never overwrites a credential that was set or rotated by hand.
resource orgSecrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [
  for (secretName, i) in secretNames: if (!empty(oktaCredentials[?secretDomains[i]] ?? '')) {
    parent: vault
    name: secretName
    properties: {
      value: oktaCredentials[secretDomains[i]]
      contentType: 'Okta credential for ${secretDomains[i]}'
    }
  }
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroup)
}

resource workspaceKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(workspaceKeySecretName)) {
  parent: vault
  name: empty(workspaceKeySecretName) ? 'unused' : workspaceKeySecretName
  properties: {
    value: workspace.listKeys().primarySharedKey
    contentType: 'Log Analytics workspace shared key (legacy Data Collector API sink)'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
