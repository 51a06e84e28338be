// Event Grid custom topic for the app's outbound events (CloudEvents 1.0, README "Outbound events").
// Entra ID only: the topic's access keys are disabled, and the app's user-assigned identity gets
// EventGrid Data Sender on this topic alone. Downstream systems subscribe to it (samples/subscriber).

@description('Topic name.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the topic.')
param tags object = {}

@description('Principal (object) id of the app identity that publishes.')
param senderPrincipalId string

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  // Subscriptions can then deliver and dead-letter with the topic's identity instead of keys or SAS.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    // checkov:skip=CKV_AZURE_193: The Flex Consumption app publishes without VNet integration, so the topic keeps its public endpoint; only Entra ID tokens of the app's identity are accepted (disableLocalAuth).
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

// Built-in role (same id in every tenant): send events to a topic, nothing else.
var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, senderPrincipalId, eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: senderPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Function app publishes outbound recording events to this topic only.'
  }
}

output id string = topic.id
output name string = topic.name
output endpoint string = topic.properties.endpoint
output principalId string = topic.identity.principalId
