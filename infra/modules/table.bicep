// The DCR-based custom table and the analysts' de-duplicated view, deployed in the workspace's
// resource group (the workspace may be an existing Sentinel workspace elsewhere).
//
// The columns come from the shipper's column manifest, the single source of truth for what the
// shipper emits (docs/design.md §4): a DCR-based table silently drops undeclared columns, so the table
// and the manifest must never drift. tests/tests/suite/infra_bicep.rs checks they are equal.

param workspaceName string
param tableName string
param tablePlan string
param retentionInDays int
param totalRetentionInDays int

@description('Leave out columns longer than 45 characters (see infra/README.md, "The 46-character column").')
param omitOverlongColumns bool

param dedupFunctionAlias string

var manifest = loadJsonContent('../../shipper/manifest/okta_cl.v1.json')
var manifestColumns = omitOverlongColumns ? filter(manifest.columns, c => length(c.name) <= 45) : (manifest.columns)

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
}

resource table 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: tableName
  properties: {
    plan: tablePlan
    retentionInDays: tablePlan == 'Analytics' ? retentionInDays : null
    totalRetentionInDays: totalRetentionInDays
    schema: {
      name: tableName
      columns: [
        for column in manifestColumns: {
          name: column.name
          type: column.type == 'datetime' ? 'dateTime' : (column.type)
        }
      ]
    }
  }
}

// A function (not a view that rewrites rows): analysts and rules that must not see the rare
// duplicate that no pipeline can prevent (a request Azure accepted whose answer was lost) query
// this instead of the table.
resource dedup 'Microsoft.OperationalInsights/workspaces/savedSearches@2020-08-01' = {
  parent: workspace
  name: 'okta-sentinel-dedup'
  properties: {
    category: 'Okta'
    displayName: '${tableName} de-duplicated by uuid_g'
    functionAlias: dedupFunctionAlias
    query: '${tableName}\n| summarize arg_max(TimeGenerated, *) by uuid_g'
    version: 2
  }
  dependsOn: [
    table
  ]
}

output tableName string = table.name
