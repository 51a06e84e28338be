// Event Grid system topic on the existing ACS resource, deployed into the ACS
// resource group. Its system-assigned identity writes dead-lettered events.
// An ACS resource can have only one system topic: if one already exists, pass
// its name and this deployment adopts it (adds the identity).

@description('System topic name.')
param name string

@description('Resource id of the existing Azure Communication Services resource.')
param acsResourceId string

@description('Tags applied to the topic.')
param tags object = {}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: 'global'
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: acsResourceId
    topicType: 'Microsoft.Communication.CommunicationServices'
  }
}

output id string = topic.id
output name string = topic.name
output principalId string = topic.identity.principalId
