// Storage for the pipeline: one queue (okta-pages) and one container (okta-sentinel) holding
// leader/, checkpoints/, pages/, state/, done/ and poison/ (docs/design.md §2). Created here because
// the services never create them in production. Shared-key access is off: every caller uses
// Microsoft Entra ID (managed identity) and the roles in roles.bicep.

param location string
param tags object
param name string
param queueName string
param containerName string

@minValue(30)
param doneMarkerRetentionDays int

@minValue(120)
param orphanPageRetentionDays int

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: queueName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}

// Lifecycle: only done/ markers (after the twin-envelope window), orphan pages/ (a page
// written but never enqueued, long after Okta's 90-day retention) and doctor/ probe blobs are
// ever deleted by Azure. leader/, checkpoints/, state/ and poison/ are never touched: they are
// the pipeline's memory. doctor/ holds the collector's probe blobs (`collector doctor` and its
// start-up self-check): its role cannot delete blobs, so they are removed here after a day
// (common/src/doctor/storage.rs). Rule schema:
// https://learn.microsoft.com/azure/templates/microsoft.storage/storageaccounts/managementpolicies
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-done-markers'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${containerName}/done/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: doneMarkerRetentionDays
                }
              }
            }
          }
        }
        {
          name: 'expire-doctor-probes'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${containerName}/doctor/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: 1
                }
              }
            }
          }
        }
        {
          name: 'expire-orphan-pages'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${containerName}/pages/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: orphanPageRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    container
  ]
}

output accountName string = account.name
output queueEndpoint string = account.properties.primaryEndpoints.queue
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueName string = queue.name
output containerName string = container.name
