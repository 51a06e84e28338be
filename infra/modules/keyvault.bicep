// Key Vault (RBAC authorization, soft delete, purge protection) holding the
// ACS connection string when the app authenticates to ACS with HMAC
// (the secret itself is in keyvault-secret.bicep) and, with customerManagedKey,
// the archive's encryption key (archive-cmk.bicep; Azure Storage requires soft
// delete and purge protection on that vault).

@description('Key Vault name (3-24 characters).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to the vault.')
param tags object = {}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    // checkov:skip=CKV_AZURE_109: Key Vault references of a Flex app without VNet integration are resolved over the public endpoint; access is RBAC (Key Vault Secrets User) only.
    // checkov:skip=CKV_AZURE_189: Same as CKV_AZURE_109: public network access is needed for the app's Key Vault references; no access policies, RBAC only.
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

output id string = vault.id
output name string = vault.name
output vaultUri string = vault.properties.vaultUri
