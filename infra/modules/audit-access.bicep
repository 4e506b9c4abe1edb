// Read access for the completeness audit (collector/src/audit/, docs/design.md §2 "Audit"): each
// collector queries the Okta table and nothing else of the workspace. Table-level read access as
// https://learn.microsoft.com/azure/azure-monitor/logs/manage-table-access ("Set table-level
// read access") documents it: at the workspace, a custom role that reads the workspace's details
// and runs a query but reads no table's data (shared keys excluded); at the table, Reader. No
// workspace-wide Reader, Log Analytics Reader or Contributor (infra_bicep refuses them).
// Deployed in the workspace's resource group (creating the role definition there needs
// Microsoft.Authorization/roleDefinitions/write on it: see infra/README.md, Prerequisites).

param workspaceName string
param tableName string

@description('Per collector: { principalId }.')
param collectorGrants array

// Reader, built-in (docs/contracts.md §7.2).
var readerRoleId = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

var rgScope = resourceGroup().id

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
}

resource table 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' existing = {
  parent: workspace
  name: tableName
}

resource collectorQueryRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(workspace.id, 'okta-sentinel', 'audit-query')
  properties: {
    roleName: 'okta-sentinel audit workspace query (${uniqueString(workspace.id)})'
    description: 'okta-sentinel collector audit: read the workspace details and run a query; reads no table by itself (Reader on the Okta table grants that).'
    type: 'CustomRole'
    assignableScopes: [
      rgScope
    ]
    permissions: [
      {
        actions: [
          'Microsoft.OperationalInsights/workspaces/read'
          'Microsoft.OperationalInsights/workspaces/query/read'
        ]
        notActions: [
          'Microsoft.OperationalInsights/workspaces/sharedKeys/read'
        ]
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource collectorWorkspaceQuery 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for grant in collectorGrants: {
    name: guid(workspace.id, grant.principalId, 'audit-query')
    scope: workspace
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', collectorQueryRole.name)
      principalId: grant.principalId
      principalType: 'ServicePrincipal'
      description: 'okta-sentinel collector audit: run queries in the workspace (no table data)'
    }
  }
]

resource collectorTableReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for grant in collectorGrants: {
    name: guid(table.id, grant.principalId, readerRoleId)
    scope: table
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', readerRoleId)
      principalId: grant.principalId
      principalType: 'ServicePrincipal'
      description: 'okta-sentinel collector audit: read the Okta table only'
    }
  }
]
