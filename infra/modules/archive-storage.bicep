// Archive storage account for the recordings: Entra-only access, no public
// blobs, versioning + soft delete, hot -> cool -> archive lifecycle, optional
// time-based immutability (WORM) on the recordings container, and the
// Event Grid dead-letter container.

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to the account.')
param tags object = {}

@description('Container that receives the recordings.')
param archiveContainerName string = 'recordings'

@description('Container that receives Event Grid dead-lettered events.')
param deadLetterContainerName string = 'eventgrid-deadletter'

@description('Replication. The archive tier needs LRS, GRS or RA-GRS (no ZRS).')
@allowed([
  'Standard_LRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param archiveSku string = 'Standard_GRS'

@description('Days after the last modification before a recording blob moves to the cool tier.')
@minValue(1)
param coolAfterDays int = 30

@description('Days after the last modification before a recording blob moves to the archive tier (0 = never).')
@minValue(0)
param archiveAfterDays int = 180

@description('Days of time-based immutability (WORM) on the recordings container; 0 = no policy.')
@minValue(0)
@maxValue(146000)
param immutabilityDays int = 0

@description('Days deleted blobs, versions and containers can be restored.')
@minValue(1)
@maxValue(365)
param softDeleteRetentionDays int = 14

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: archiveSku
  }
  properties: {
    // checkov:skip=CKV_AZURE_35: No VNet integration on this Flex plan, so the worker reaches the archive over the public endpoint; shared keys are off and access is Entra ID RBAC on the container only.
    // checkov:skip=CKV_AZURE_59: Same as CKV_AZURE_35: public endpoint with Entra ID only; anonymous blob access is disabled (allowBlobPublicAccess false).
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    isVersioningEnabled: true
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
  }
}

resource archiveContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: archiveContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Unlocked policy: it can still be shortened or removed. Lock it by hand once
// the period is agreed (see docs/DEPLOY.md); a locked policy cannot be undone.
resource immutability 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = if (immutabilityDays > 0) {
  parent: archiveContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: immutabilityDays
    allowProtectedAppendWrites: false
  }
}

var coolAction = {
  tierToCool: {
    daysAfterModificationGreaterThan: coolAfterDays
  }
}

var archiveAction = {
  tierToArchive: {
    daysAfterModificationGreaterThan: archiveAfterDays
  }
}

var versionCoolAction = {
  tierToCool: {
    daysAfterCreationGreaterThan: coolAfterDays
  }
}

var versionArchiveAction = {
  tierToArchive: {
    daysAfterCreationGreaterThan: archiveAfterDays
  }
}

// Only tiering: nothing in the archive is ever deleted by a rule.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'recordings-tiering'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${archiveContainerName}/'
              ]
            }
            actions: {
              baseBlob: (archiveAfterDays > 0) ? union(coolAction, archiveAction) : coolAction
              version: (archiveAfterDays > 0) ? union(versionCoolAction, versionArchiveAction) : versionCoolAction
            }
          }
        }
      ]
    }
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = 'https://${storage.name}.blob.${environment().suffixes.storage}'
output archiveContainerName string = archiveContainer.name
output deadLetterContainerName string = deadLetterContainer.name
