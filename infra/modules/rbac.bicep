// Least-privilege role assignments in the application resource group.
//   app identity -> archive CONTAINER          : Recording archive writer (custom role below)
//   app identity -> state CONTAINER            : Storage Blob Data Contributor
//   app identity -> dead-letter CONTAINER      : Recording archive writer (reads, creates its records; no delete)
//   app identity -> function storage account   : Storage Blob Data Owner, Storage Queue Data Contributor
//   app identity -> Application Insights       : Monitoring Metrics Publisher
//   app identity -> Key Vault                  : Key Vault Secrets User
//   Event Grid system topic -> dead-letter CONTAINER : Storage Blob Data Contributor

@description('Principal (object) id of the app user-assigned identity.')
param appPrincipalId string

@description('Principal id of the Event Grid system topic identity (dead-lettering).')
param systemTopicPrincipalId string

@description('Archive storage account name.')
param archiveStorageAccountName string

@description('Archive container the app writes recordings to.')
param archiveContainerName string

@description('Container of the app\'s mutable state (ARCHIVE_STATE_CONTAINER).')
param stateContainerName string

@description('Container Event Grid dead-letters into.')
param deadLetterContainerName string

@description('Function storage account name (AzureWebJobsStorage).')
param functionStorageAccountName string

@description('Application Insights component name.')
param applicationInsightsName string

@description('Key Vault name.')
param keyVaultName string

// Built-in role definition ids (same in every tenant).
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource archiveAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: archiveStorageAccountName
}

resource archiveBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: archiveAccount
  name: 'default'
}

resource archiveContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: archiveBlobService
  name: archiveContainerName
}

resource stateContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: archiveBlobService
  name: stateContainerName
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: archiveBlobService
  name: deadLetterContainerName
}

resource functionStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: functionStorageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// The write-once archive needs create and read, and the index tag the app sets
// on media in the same Put Block List. No built-in role fits: Storage Blob Data
// Contributor lacks blobs/tags/write (the tagged commit is refused) and carries
// delete; Storage Blob Data Owner adds immutableStorage/runAsSuperUser, which
// could shorten or delete an unlocked retention policy or clear a legal hold.
// Assignable only in this resource group, and assigned only on the container.
var archiveWriterDataActions = [
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/write'
]

resource archiveWriterRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'recording-archive-writer')
  properties: {
    roleName: 'Recording archive writer (${resourceGroup().name}, ${uniqueString(resourceGroup().id)})'
    description: 'Create, read and tag blobs in the write-once recordings archive; no delete, no immutability or legal-hold changes.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: archiveWriterDataActions
        notDataActions: []
      }
    ]
  }
}

resource archiveWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(archiveContainer.id, appPrincipalId, archiveWriterRole.name)
  scope: archiveContainer
  properties: {
    // Role assignments take the subscription-level id of a definition, also of
    // one created in a resource group.
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', archiveWriterRole.name)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Function app creates and reads recordings in the write-once archive container only.'
  }
}

// The dead-letter redrive (app/deadletter.py) lists and reads what Event Grid wrote and creates its records beside
// it; the same create-and-read role, so it can delete nothing there either.
resource deadLetterRedriver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, appPrincipalId, archiveWriterRole.name)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', archiveWriterRole.name)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Function app reads dead-lettered events and records their redrive beside them; no delete.'
  }
}

resource stateWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(stateContainer.id, appPrincipalId, storageBlobDataContributor)
  scope: stateContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Function app rewrites manifests, quarantine records, lock blobs and the legal-hold registry in the state container only.'
  }
}

resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(functionStorage.id, appPrincipalId, storageBlobDataOwner)
  scope: functionStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Functions host: deployment package, host locks and leases.'
  }
}

resource hostQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(functionStorage.id, appPrincipalId, storageQueueDataContributor)
  scope: functionStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Enqueue chunk jobs, queue trigger, poison queue.'
  }
}

resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Entra-authenticated telemetry ingestion (local auth is disabled).'
  }
}

resource secretsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Key Vault references in app settings (ACS connection string).'
  }
}

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, systemTopicPrincipalId, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: systemTopicPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Event Grid system topic dead-letters undeliverable events (identity-based).'
  }
}

output archiveWriterRoleName string = archiveWriterRole.properties.roleName
