// The Direct data collection rule the shipper posts to (Logs Ingestion API). The stream declares
// exactly the columns of the shipper's column manifest (less the 46-character one when the table
// omits it: a transform may not output a column the table lacks, and an undeclared input column
// is ignored); the transform is `source` (the shipper already emits the final row, TimeGenerated
// included) or, when asked, drops DEBUG events.

param location string
param tags object
param name string
param workspaceResourceId string
param streamName string
param dropDebugEvents bool
param omitOverlongColumns bool

var manifest = loadJsonContent('../../shipper/manifest/okta_cl.v1.json')
// The same filter as the table's (table.bicep).
var streamColumns = omitOverlongColumns ? filter(manifest.columns, c => length(c.name) <= 45) : (manifest.columns)

resource rule 'Microsoft.Insights/dataCollectionRules@2023-03-11' = {
  name: name
  location: location
  tags: tags
  kind: 'Direct'
  properties: {
    streamDeclarations: {
      '${streamName}': {
        columns: [
          for column in streamColumns: {
            name: column.name
            type: column.type
          }
        ]
      }
    }
    destinations: {
      logAnalytics: [
        {
          name: 'workspace'
          workspaceResourceId: workspaceResourceId
        }
      ]
    }
    dataFlows: [
      {
        streams: [
          streamName
        ]
        destinations: [
          'workspace'
        ]
        transformKql: dropDebugEvents ? 'source | where severity_s != \'DEBUG\'' : 'source'
        outputStream: streamName
      }
    ]
  }
}

output name string = rule.name
output immutableId string = rule.properties.immutableId
output logsIngestionEndpoint string = rule.properties.endpoints.logsIngestion
