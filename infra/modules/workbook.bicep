// The Azure Monitor workbook "Recording archive" over Application Insights: what was archived, how close to
// ACS's deadline, failures, lost chunks, the poison queue, incomplete recordings, event-to-DELETE latency.
// Its queries are in workbook.json (checked against a run's telemetry by tests/e2e/test_dashboard.py).

@description('Azure region.')
param location string

@description('Tags applied to the workbook.')
param tags object = {}

@description('Resource id of Application Insights, the workbook\'s data source.')
param applicationInsightsId string

@description('Name shown in the portal.')
param displayName string = 'Recording archive'

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'recording-archive-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: loadTextContent('workbook.json')
  }
}

output id string = workbook.id
