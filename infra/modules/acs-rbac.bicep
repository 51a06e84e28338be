// Entra mode only: lets the app identity call the ACS data plane (download and
// delete recordings) with a token for https://communication.azure.com/.
// Deployed into the ACS resource's own resource group.

@description('Name of the existing Azure Communication Services resource.')
param acsName string

@description('Principal (object) id of the app user-assigned identity.')
param appPrincipalId string

@description('Role definition id (GUID) granted on the ACS resource. Default: Communication and Email Service Owner, the only built-in ACS role; pass a custom role id to narrow it.')
param roleDefinitionGuid string = '09976791-48a7-449e-bb21-39d1a415f350'

resource acs 'Microsoft.Communication/communicationServices@2023-04-01' existing = {
  name: acsName
}

resource acsDataAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(acs.id, appPrincipalId, roleDefinitionGuid)
  scope: acs
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Recording archiver downloads and deletes recordings with its managed identity.'
  }
}
