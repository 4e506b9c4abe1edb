// The Direct data collection rule the shipper posts to (Logs Ingestion API). The stream declares
// exactly the columns of the shipper's column manifest; the transform is `source` (the shipper
// already emits the final row, TimeGenerated included) or, when asked, drops DEBUG events.

param location string
param tags object
param name string
param workspaceResourceId string
param streamName string
param dropDebugEvents bool

var manifest = loadJsonContent('../../shipper/manifest/okta_cl.v1.json')

resource rule 'Microsoft.Insights/dataCollectionRules@2023-03-11' = {
  name: name
  location: location
  tags: tags
  kind: 'Direct'
  properties: {
    streamDeclarations: {
      '${streamName}': {
        columns: [
          for column in manifest.columns: {
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
