// An existing Okta_CL this template did not create (a classic table migrated to DCR-based):
// only ever ADDS the manifest's missing columns.
//
// A PUT of a table's schema replaces its custom column set — a column left out is deleted with
// its data, and a column cannot change type
// (https://learn.microsoft.com/en-us/rest/api/loganalytics/tables/create-or-update,
// https://learn.microsoft.com/en-us/azure/azure-monitor/logs/create-custom-table). So the
// schema sent is every current column exactly as it is (name and type), then the manifest
// columns the table lacks. A manifest column the table has with another type keeps the
// table's type and is reported in `typeConflicts`. Plan and retention stay as they are.

param workspaceName string
param tableName string

@description('The table as table-read.bicep read it: { plan, retentionInDays, totalRetentionInDays, columns, standardColumns }.')
param current object

@description('Leave out manifest columns longer than 45 characters (infra/README.md, "The 46-character column"); a column the table already has is kept either way.')
param omitOverlongColumns bool

param dedupFunctionAlias string

var manifest = loadJsonContent('../../shipper/manifest/okta_cl.v1.json')
var manifestColumns = omitOverlongColumns ? filter(manifest.columns, c => length(c.name) <= 45) : (manifest.columns)
var wanted = map(manifestColumns, c => {
  name: c.name
  type: c.type == 'datetime' ? 'dateTime' : (c.type)
})
var currentColumns = current.columns
var existingNames = map(concat(currentColumns, current.standardColumns), c => toLower(c.name))
// The current custom columns, unchanged, then what is missing.
var kept = map(currentColumns, c => {
  name: c.name
  type: c.type
})
// A column over 45 characters is never added: the service refuses to create one (a migrated
// classic table that has it keeps it above).
var added = filter(wanted, w => !contains(existingNames, toLower(w.name)) && length(w.name) <= 45)
var typeConflicts = map(
  filter(wanted, w => length(filter(currentColumns, c => toLower(c.name) == toLower(w.name) && toLower(c.type) != toLower(w.type))) > 0),
  w => (w.name)
)

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
}

resource table 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: tableName
  properties: {
    plan: current.plan
    retentionInDays: current.plan == 'Analytics' ? current.retentionInDays : null
    totalRetentionInDays: current.totalRetentionInDays
    schema: {
      name: tableName
      columns: concat(kept, added)
    }
  }
}

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
output typeConflicts array = typeConflicts
