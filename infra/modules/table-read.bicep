// Reads an existing table (existingTable = true) so that table-extend.bicep can send back its
// schema with only the missing columns added. A separate deployment on purpose: reading and
// writing the same table in one template would make the write depend on itself.

param workspaceName string
param tableName string

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
}

resource table 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' existing = {
  parent: workspace
  name: tableName
}

@description('The table as it is: plan, retention, custom columns and standard columns (TimeGenerated of a migrated classic table is a standard column).')
output table object = {
  plan: table.properties.plan
  retentionInDays: table.properties.retentionInDays
  totalRetentionInDays: table.properties.totalRetentionInDays
  columns: table.properties.schema.?columns ?? []
  standardColumns: table.properties.schema.?standardColumns ?? []
}
output plan string = table.properties.plan
