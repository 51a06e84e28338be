// Archive storage account for the recordings: Entra-only access, no public
// blobs, versioning + soft delete, and three containers:
//   recordings        write-once (WORM): version-level immutability with a
//                     default time-based retention of retentionDays, so every
//                     blob is immutable from its creation;
//   recordings-state  the app's mutable state (manifests, quarantine, locks,
//                     legal-hold registry): no immutability, no lifecycle rule;
//   eventgrid-deadletter  Event Grid dead letters.
// Lifecycle tiers only blobs tagged kind=media (never evidence JSON, never the
// state), and deletes nothing unless deleteAfterRetention is set. Encryption
// uses a customer-managed key when customerManagedKey is set.

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

@description('Container of the app\'s mutable state (ARCHIVE_STATE_CONTAINER); never immutable, never touched by lifecycle rules.')
param stateContainerName string = 'recordings-state'

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

@description('Days every blob in the recordings container stays immutable after its creation (default version-level retention policy). 1..146000 (400 years) is the range Azure accepts.')
@minValue(1)
@maxValue(146000)
param retentionDays int = 2555

@description('true once an operator has locked the retention policy: ARM can no longer write a locked policy, so the template leaves it alone.')
param retentionPolicyLocked bool = false

@description('Delete blobs (and their versions) in the recordings container deleteMarginDays after retentionDays. Off by default: the archive keeps everything.')
param deleteAfterRetention bool = false

@description('Encrypt the account with a customer-managed key (Key Vault key) instead of a Microsoft-managed key.')
param customerManagedKey bool = false

@description('customerManagedKey only: resource id of the user-assigned identity the account uses to reach the key.')
param encryptionIdentityId string = ''

@description('customerManagedKey only: vault URI, https://NAME.vault.azure.net/.')
param keyVaultUri string = ''

@description('customerManagedKey only: key name. No version: the account follows the key\'s newest version.')
param keyName string = ''

@description('Days deleted blobs, versions and containers can be restored.')
@minValue(1)
@maxValue(365)
param softDeleteRetentionDays int = 14

// Blob index tag the app sets on media blobs in the same Put Block List that
// creates them; evidence JSON (metadata, custody, source-deleted, index, lost,
// rejected records) carries none, so it is never tiered offline.
var mediaTag = {
  name: 'kind'
  op: '=='
  value: 'media'
}

// A lifecycle delete of a blob still under retention (or a legal hold) fails;
// the margin keeps the rule clear of the expiry instant (lifecycle runs once a
// day, and a policy change takes up to 24 hours to apply), and leaves a window
// to place a legal hold on an expiring blob.
var deleteMarginDays = 30

var infrastructureEncryption = {
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

// Versionless key: the account picks up a rotated key version by itself.
var customerKeyEncryption = {
  keySource: 'Microsoft.Keyvault'
  keyvaultproperties: {
    keyname: keyName
    keyvaulturi: keyVaultUri
  }
  identity: {
    userAssignedIdentity: encryptionIdentityId
  }
}

var platformKeyEncryption = {
  keySource: 'Microsoft.Storage'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: archiveSku
  }
  // Only the key needs an identity; the app reaches the data with its own.
  identity: customerManagedKey ? {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${encryptionIdentityId}': {}
    }
  } : {
    type: 'None'
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
    encryption: union(infrastructureEncryption, customerManagedKey ? customerKeyEncryption : platformKeyEncryption)
  }
}

// Version-level immutability needs versioning; point-in-time restore and last
// access tracking are incompatible with it and stay off.
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

// Version-level immutability can only be switched on when a container is
// created (an existing one must be migrated, see docs/DEPLOY.md) and never off.
resource archiveContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: archiveContainerName
  properties: {
    publicAccess: 'None'
    immutableStorageWithVersioning: {
      enabled: true
    }
  }
}

// Manifests, quarantine records, lock blobs and the legal-hold registry are
// rewritten and deleted: they live here, outside the write-once container.
resource stateContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: stateContainerName
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

// On a container with version-level immutability this is the DEFAULT policy
// every new blob version inherits: immutable from its creation for
// retentionDays. ARM creates it unlocked (state is read-only here) so a
// mistaken deployment can still be corrected; locking is a deliberate,
// irreversible operator step (docs/DEPLOY.md). ARM cannot rewrite a locked
// policy, hence retentionPolicyLocked. No protected appends: nothing is ever
// added to an archived blob.
resource retentionPolicy 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = if (!retentionPolicyLocked) {
  parent: archiveContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: retentionDays
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

// Media only (blob index tag kind=media) in the recordings container. Index
// tags of previous versions are not indexed, so the rule has no version
// action: media blobs are created once and have no previous versions.
var mediaTieringRule = {
  name: 'recordings-media-tiering'
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
      blobIndexMatch: [
        mediaTag
      ]
    }
    actions: {
      baseBlob: (archiveAfterDays > 0) ? union(coolAction, archiveAction) : coolAction
    }
  }
}

var expireAction = {
  delete: {
    daysAfterCreationGreaterThan: retentionDays + deleteMarginDays
  }
}

// Every blob of the recordings container (media and evidence), and the
// previous version a base-blob delete leaves behind (versioning is on). Blobs
// still under retention or a legal hold are not deleted.
var expireRule = {
  name: 'recordings-delete-after-retention'
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
      baseBlob: expireAction
      version: expireAction
    }
  }
}

// Each rule is filtered on the recordings/ prefix: a container name has no
// '/', so recordings-state/ and eventgrid-deadletter/ never match.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: deleteAfterRetention ? [
        mediaTieringRule
        expireRule
      ] : [
        mediaTieringRule
      ]
    }
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = 'https://${storage.name}.blob.${environment().suffixes.storage}'
output archiveContainerName string = archiveContainer.name
output stateContainerName string = stateContainer.name
output deadLetterContainerName string = deadLetterContainer.name
