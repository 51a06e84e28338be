// Recording archiver: Flex Consumption Function App that copies Azure
// Communication Services call recordings into a write-once (WORM) archive.
//
// Step 1 (azd provision, this file): everything except the Event Grid
// subscription. Step 2 (azd postdeploy hook, infra/subscription.bicep): the
// subscription, once the deployed function can answer Event Grid's handshake.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; seeds resource names and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Region of the application resources (must offer Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to create; empty = rg-<environmentName>.')
param resourceGroupName string = ''

@description('Resource id of the EXISTING Azure Communication Services resource whose recordings are archived.')
param acsResourceId string

@description('How the app authenticates to ACS: entra (managed identity, role on the ACS resource) or hmac (connection string in Key Vault).')
@allowed([
  'entra'
  'hmac'
])
param acsAuthMode string = 'entra'

@description('hmac mode only: ACS connection string. Empty = read it from the ACS resource with listKeys at deployment.')
@secure()
param acsConnectionString string = ''

@description('entra mode only: role definition GUID granted to the app on the ACS resource.')
param acsRoleDefinitionGuid string = '09976791-48a7-449e-bb21-39d1a415f350'

@description('Name of the Event Grid system topic on the ACS resource; empty = generated. Set it to the existing topic name if the ACS resource already has one.')
param eventGridSystemTopicName string = ''

@description('E-mail address for alerts; empty = no receiver.')
param alertEmail string = ''

@description('Days before archived recordings move to the cool tier.')
@minValue(1)
param coolAfterDays int = 30

@description('Days before archived recordings move to the archive tier (0 = never).')
@minValue(0)
param archiveAfterDays int = 180

@description('Days each blob in the recordings container stays immutable after it is written (default 2555 = 7 years). A change applies to blobs written afterwards; once the policy is locked keep it equal to the locked period.')
@minValue(1)
@maxValue(146000)
param retentionDays int = 2555

@description('Set to true after locking the retention policy (docs/DEPLOY.md): the template then leaves the locked policy alone.')
param retentionPolicyLocked bool = false

@description('Delete recordings (media and evidence) 30 days after retentionDays, once nothing holds them. Off: the archive keeps everything.')
param deleteAfterRetention bool = false

@description('Encrypt the archive account with a customer-managed Key Vault key (RSA 3072, rotated yearly).')
param customerManagedKey bool = false

@description('Days deleted blobs, versions and containers stay restorable.')
@minValue(1)
@maxValue(365)
param softDeleteRetentionDays int = 14

@description('Replication of the archive account (archive tier needs LRS/GRS/RA-GRS).')
@allowed([
  'Standard_LRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param archiveStorageSku string = 'Standard_GRS'

@description('Archive container name (ARCHIVE_CONTAINER).')
param archiveContainerName string = 'recordings'

@description('Container of the app\'s mutable state (ARCHIVE_STATE_CONTAINER): manifests, quarantine records, locks, legal-hold registry.')
param archiveStateContainer string = 'recordings-state'

@description('Event Grid dead-letter container name.')
param deadLetterContainerName string = 'eventgrid-deadletter'

@description('Redrive what Event Grid dead-letters every 5 minutes, through the webhook path (DEADLETTER_REDRIVE_ON_SCHEDULE). Off: it is only counted and alerted on, and redriven by recording-archive replay --deadletter.')
param deadLetterRedriveOnSchedule bool = true

@description('Work queue name (CHUNK_QUEUE_NAME); the poison queue is <name>-poison.')
param chunkQueueName string = 'recording-chunks'

@description('Flex Consumption instance memory in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Maximum Flex Consumption instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Make the Flex Consumption plan zone redundant (region must support it).')
param zoneRedundant bool = false

@description('Hours ACS keeps recordings (RECORDING_RETENTION_HOURS).')
param recordingRetentionHours int = 24

@description('Create an Event Grid topic for outbound recording events (CloudEvents; Entra ID only) and publish to it. Off: no events are published.')
param outboundEventsTopic bool = false

@description('Log Analytics retention in days.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

var tags = {
  'azd-env-name': environmentName
  workload: 'acs-recording-archive'
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var rgName = empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
var functionAppName = 'func-rec-${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'

// /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Communication/communicationServices/{name}
var acsIdParts = split(acsResourceId, '/')
var acsSubscriptionId = acsIdParts[2]
var acsResourceGroupName = acsIdParts[4]
var acsName = last(acsIdParts)
var systemTopicName = empty(eventGridSystemTopicName) ? 'evgt-acs-${resourceToken}' : eventGridSystemTopicName

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: rgName
  location: location
  tags: tags
}

resource acs 'Microsoft.Communication/communicationServices@2023-04-01' existing = {
  name: acsName
  scope: resourceGroup(acsSubscriptionId, acsResourceGroupName)
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-rec-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-rec-${resourceToken}'
    applicationInsightsName: 'appi-rec-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionDays
  }
}

module functionStorage 'modules/function-storage.bicep' = {
  name: 'function-storage'
  scope: rg
  params: {
    name: 'stfn${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    chunkQueueName: chunkQueueName
  }
}

// customerManagedKey: the archive account's own identity (not the app's, which
// must not be able to use the key) and the key it is granted.
module archiveEncryptionIdentity 'modules/identity.bicep' = if (customerManagedKey) {
  name: 'archive-encryption-identity'
  scope: rg
  params: {
    name: 'id-starc-${resourceToken}'
    location: location
    tags: tags
  }
}

module archiveKey 'modules/archive-cmk.bicep' = if (customerManagedKey) {
  name: 'archive-encryption-key'
  scope: rg
  params: {
    vaultName: keyVault.outputs.name
    encryptionPrincipalId: customerManagedKey ? archiveEncryptionIdentity.outputs.principalId : ''
  }
}

module archiveStorage 'modules/archive-storage.bicep' = {
  name: 'archive-storage'
  scope: rg
  params: {
    name: 'starc${resourceToken}'
    location: location
    tags: tags
    archiveSku: archiveStorageSku
    archiveContainerName: archiveContainerName
    stateContainerName: archiveStateContainer
    deadLetterContainerName: deadLetterContainerName
    coolAfterDays: coolAfterDays
    archiveAfterDays: archiveAfterDays
    retentionDays: retentionDays
    retentionPolicyLocked: retentionPolicyLocked
    deleteAfterRetention: deleteAfterRetention
    softDeleteRetentionDays: softDeleteRetentionDays
    customerManagedKey: customerManagedKey
    encryptionIdentityId: customerManagedKey ? archiveEncryptionIdentity.outputs.id : ''
    keyVaultUri: customerManagedKey ? archiveKey.outputs.vaultUri : ''
    keyName: customerManagedKey ? archiveKey.outputs.keyName : ''
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'key-vault'
  scope: rg
  params: {
    name: 'kv-rec-${resourceToken}'
    location: location
    tags: tags
  }
}

module acsSecret 'modules/keyvault-secret.bicep' = if (acsAuthMode == 'hmac') {
  name: 'acs-connection-string'
  scope: rg
  params: {
    vaultName: keyVault.outputs.name
    secretName: 'acs-connection-string'
    secretValue: empty(acsConnectionString) ? acs.listKeys().primaryConnectionString : acsConnectionString
  }
}

module eventGridTopic 'modules/eventgrid-topic.bicep' = {
  name: 'eventgrid-system-topic-${resourceToken}'
  scope: resourceGroup(acsSubscriptionId, acsResourceGroupName)
  params: {
    name: systemTopicName
    acsResourceId: acsResourceId
    tags: tags
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
    systemTopicPrincipalId: eventGridTopic.outputs.principalId
    archiveStorageAccountName: archiveStorage.outputs.name
    archiveContainerName: archiveStorage.outputs.archiveContainerName
    stateContainerName: archiveStorage.outputs.stateContainerName
    deadLetterContainerName: archiveStorage.outputs.deadLetterContainerName
    functionStorageAccountName: functionStorage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
  }
}

module acsRbac 'modules/acs-rbac.bicep' = if (acsAuthMode == 'entra') {
  name: 'acs-rbac-${resourceToken}'
  scope: resourceGroup(acsSubscriptionId, acsResourceGroupName)
  params: {
    acsName: acsName
    appPrincipalId: identity.outputs.principalId
    roleDefinitionGuid: acsRoleDefinitionGuid
  }
}

module outboundTopic 'modules/outbound-topic.bicep' = if (outboundEventsTopic) {
  name: 'outbound-events-topic'
  scope: rg
  params: {
    name: 'evgt-rec-${resourceToken}'
    location: location
    tags: tags
    senderPrincipalId: identity.outputs.principalId
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-rec-${resourceToken}'
    location: location
    tags: tags
    serviceName: 'api'
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: functionStorage.outputs.name
    storageBlobEndpoint: functionStorage.outputs.blobEndpoint
    deploymentContainerName: functionStorage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    zoneRedundant: zoneRedundant
    archiveStorageAccountUrl: archiveStorage.outputs.blobEndpoint
    archiveContainerName: archiveStorage.outputs.archiveContainerName
    archiveStateContainerName: archiveStorage.outputs.stateContainerName
    chunkQueueName: functionStorage.outputs.chunkQueueName
    acsResourceId: acsResourceId
    acsAuthMode: acsAuthMode
    acsEndpoint: 'https://${acs.properties.hostName}'
    acsSecretUri: (acsAuthMode == 'hmac') ? acsSecret.outputs.secretUri : ''
    recordingRetentionHours: recordingRetentionHours
    outboundEventsTopicEndpoint: outboundEventsTopic ? outboundTopic.outputs.endpoint : ''
    deadLetterContainerName: archiveStorage.outputs.deadLetterContainerName
    deadLetterRedriveOnSchedule: deadLetterRedriveOnSchedule
  }
  dependsOn: [
    rbac
  ]
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: 'rec-${resourceToken}'
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    alertEmail: alertEmail
    poisonQueueName: functionStorage.outputs.poisonQueueName
    deadLetterContainerName: archiveStorage.outputs.deadLetterContainerName
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

// azd stores these in .azure/<env>/.env; the postdeploy hook reads them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output RECORDING_WEBHOOK_URL string = functionApp.outputs.webhookUrl
output ACS_RESOURCE_ID string = acsResourceId
output ACS_AUTH_MODE string = acsAuthMode
output ARCHIVE_STORAGE_ACCOUNT_NAME string = archiveStorage.outputs.name
output ARCHIVE_STORAGE_ACCOUNT_ID string = archiveStorage.outputs.id
output ARCHIVE_CONTAINER string = archiveStorage.outputs.archiveContainerName
output ARCHIVE_STATE_CONTAINER string = archiveStorage.outputs.stateContainerName
output ARCHIVE_WRITER_ROLE_NAME string = rbac.outputs.archiveWriterRoleName
output DEADLETTER_CONTAINER string = archiveStorage.outputs.deadLetterContainerName
output EVENTGRID_SYSTEM_TOPIC_NAME string = eventGridTopic.outputs.name
output EVENTGRID_RESOURCE_GROUP string = acsResourceGroupName
output EVENTGRID_SUBSCRIPTION_ID string = acsSubscriptionId
output KEY_VAULT_NAME string = keyVault.outputs.name
output WORKBOOK_ID string = workbook.outputs.id
output OUTBOUND_EVENTS_TOPIC_ID string = outboundEventsTopic ? outboundTopic.outputs.id : ''
output OUTBOUND_EVENTS_TOPIC_ENDPOINT string = outboundEventsTopic ? outboundTopic.outputs.endpoint : ''
