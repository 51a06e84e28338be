// The ACS connection string as a Key Vault secret (hmac mode only; main.bicep
// deploys this module conditionally). The app reads it through a Key Vault
// reference in ACS_CONNECTION_STRING, resolved with the user-assigned identity.

@description('Existing Key Vault name.')
param vaultName string

@description('Secret name.')
param secretName string = 'acs-connection-string'

@description('ACS connection string (endpoint=https://NAME.communication.azure.com/;accesskey=...).')
@secure()
param secretValue string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: secretName
  properties: {
    // checkov:skip=CKV_AZURE_41: ACS access keys do not expire; an expiry date would silently break the app. Rotate with the key (docs/DEPLOY.md).
    value: secretValue
    contentType: 'text/plain; acs-connection-string'
  }
}

// Versionless URI: a rotated secret is picked up without redeploying.
output secretUri string = secret.properties.secretUri
