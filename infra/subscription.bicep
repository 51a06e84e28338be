// Step 2: the Event Grid subscription that delivers
// Microsoft.Communication.RecordingFileStatusUpdated to the deployed webhook.
// Event Grid validates the endpoint while creating the subscription, so this is
// deployed only after the code is running (infra/hooks/postdeploy.sh), into the
// resource group of the system topic (the ACS resource group).
targetScope = 'resourceGroup'

@description('Existing Event Grid system topic on the ACS resource (main.bicep output EVENTGRID_SYSTEM_TOPIC_NAME).')
param systemTopicName string

@description('Event subscription name.')
param eventSubscriptionName string = 'recording-file-status-updated'

@description('Function App name (main.bicep output AZURE_FUNCTION_APP_NAME).')
param functionAppName string

@description('Resource group of the Function App (main.bicep output AZURE_RESOURCE_GROUP).')
param functionAppResourceGroup string

@description('Subscription of the Function App; default = this deployment subscription.')
param functionAppSubscriptionId string = subscription().subscriptionId

@description('HTTP-triggered function that answers the handshake and receives the events.')
param functionName string = 'recording_events'

@description('Route of that function (https://<app>/api/<route>).')
param functionRoute string = 'recording-events'

@description('Resource id of the storage account holding the dead-letter container (main.bicep output ARCHIVE_STORAGE_ACCOUNT_ID).')
param deadLetterStorageAccountId string

@description('Dead-letter container name (main.bicep output DEADLETTER_CONTAINER).')
param deadLetterContainerName string = 'eventgrid-deadletter'

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
  scope: resourceGroup(functionAppSubscriptionId, functionAppResourceGroup)
}

// Function-level key of recording_events only (not the host master key).
resource webhookFunction 'Microsoft.Web/sites/functions@2024-04-01' existing = {
  parent: site
  name: functionName
}

resource recordingEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: eventSubscriptionName
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${site.properties.defaultHostName}/api/${functionRoute}?code=${uriComponent(webhookFunction.listKeys().default)}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Communication.RecordingFileStatusUpdated'
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output eventSubscriptionId string = recordingEvents.id
