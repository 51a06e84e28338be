// customerManagedKey only (main.bicep deploys this module conditionally): the
// Key Vault key that wraps the archive account's encryption key, and the one
// role the account's user-assigned identity needs to use it. Scoped to the key,
// not the vault: the identity can wrap and unwrap with this key and nothing else.
// The archive account consumes this module's outputs, so ARM finishes the key
// and the role assignment before the account switches to the key.

@description('Existing Key Vault name (soft delete and purge protection on, as Azure Storage requires).')
param vaultName string

@description('Key name.')
param keyName string = 'archive-encryption'

@description('Principal (object) id of the archive account\'s user-assigned identity.')
param encryptionPrincipalId string

@description('RSA key size; Azure Storage accepts 2048, 3072 and 4096.')
@allowed([
  2048
  3072
  4096
])
param keySize int = 3072

// Built-in role definition id (same in every tenant).
var keyVaultCryptoServiceEncryptionUser = 'e147488a-f6f5-4113-8e2d-b22465e65bf6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

// ARM creates the first version and leaves an existing key untouched on later
// deployments. Rotated yearly by Key Vault; every rotated version expires
// after two years, and the account follows the newest version within a day.
resource key 'Microsoft.KeyVault/vaults/keys@2023-07-01' = {
  parent: vault
  name: keyName
  properties: {
    // checkov:skip=CKV_AZURE_112: The vault is the standard SKU (software-protected keys); an HSM-backed key needs a premium vault or Managed HSM, a cost the customer can choose by changing kty to RSA-HSM and the vault SKU.
    kty: 'RSA'
    keySize: keySize
    keyOps: [
      'wrapKey'
      'unwrapKey'
    ]
    attributes: {
      enabled: true
    }
    rotationPolicy: {
      attributes: {
        expiryTime: 'P2Y'
      }
      lifetimeActions: [
        {
          trigger: {
            timeAfterCreate: 'P1Y'
          }
          action: {
            type: 'rotate'
          }
        }
        {
          trigger: {
            timeBeforeExpiry: 'P30D'
          }
          action: {
            type: 'notify'
          }
        }
      ]
    }
  }
}

resource keyUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(key.id, encryptionPrincipalId, keyVaultCryptoServiceEncryptionUser)
  scope: key
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCryptoServiceEncryptionUser)
    principalId: encryptionPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Archive storage account wraps and unwraps its account key with this key.'
  }
}

output keyName string = key.name
output vaultUri string = vault.properties.vaultUri
