// User-assigned managed identity. main.bicep deploys it twice: the Function
// App's (host, worker code, Key Vault references and the deployment package
// download) and, with customerManagedKey, the archive account's own, which only
// reaches the encryption key.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
