// Flex Consumption (FC1) plan + Python 3.13 Function App. Everything the app
// reaches (its storage, the archive, Key Vault, App Insights, ACS in Entra mode)
// is reached with the user-assigned identity.

@description('Function App name.')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags applied to the plan and the app (the app also gets azd-service-name).')
param tags object = {}

@description('azd service name the app is tagged with (azure.yaml services key).')
param serviceName string = 'api'

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Name of the function storage account (AzureWebJobsStorage).')
param storageAccountName string

@description('Blob endpoint of the function storage account, with the trailing slash.')
param storageBlobEndpoint string

@description('Container holding the deployment package.')
param deploymentContainerName string

@description('Application Insights connection string.')
param applicationInsightsConnectionString string

@description('Memory per instance in MB. 2048 lets a worker stream a ~2 GB chunk with room to spare.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('How a deploy or an app-setting change reaches running instances. Recreate (GA) ends running executions: the pipeline resumes them from their staged blocks (README, Site updates). RollingUpdate is in preview and not for production.')
@allowed([
  'Recreate'
  'RollingUpdate'
])
param siteUpdateStrategy string = 'Recreate'

@description('Share of traces kept when an invocation arrives without a sampled parent (OTEL_TRACES_SAMPLER_ARG of the distro sampler parentbased_trace_id_ratio, 0 to 1). An invocation the host samples keeps every span.')
param telemetrySamplingRatio string = '1.0'

@description('Upper bound of instances the plan scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Make the Flex Consumption plan zone redundant (only in regions that support it).')
param zoneRedundant bool = false

@description('Blob endpoint of the archive account, no trailing slash (ARCHIVE_STORAGE_ACCOUNT_URL).')
param archiveStorageAccountUrl string

@description('Archive container name (ARCHIVE_CONTAINER).')
param archiveContainerName string

@description('Container of the app\'s mutable state beside the write-once archive (ARCHIVE_STATE_CONTAINER).')
param archiveStateContainerName string

@description('Work queue name (CHUNK_QUEUE_NAME).')
param chunkQueueName string

@description('Resource id of the ACS resource whose events are accepted (ACS_RESOURCE_ID).')
param acsResourceId string

@description('hmac: ACS_CONNECTION_STRING from Key Vault. entra: ACS_ENDPOINT + managed identity.')
@allowed([
  'entra'
  'hmac'
])
param acsAuthMode string = 'entra'

@description('ACS endpoint, https://NAME.communication.azure.com (used in entra mode).')
param acsEndpoint string

@description('Versionless Key Vault secret URI of the ACS connection string (used in hmac mode).')
param acsSecretUri string = ''

@description('Host suffixes recording URLs may point to (RECORDING_ALLOWED_HOSTS).')
param recordingAllowedHosts string = '.asm.skype.com,.asyncgw.teams.microsoft.com,.ams.gov.teams.microsoft.us'

@description('Hours ACS keeps recordings (RECORDING_RETENTION_HOURS).')
param recordingRetentionHours int = 24

@description('Event Grid topic endpoint for outbound events (OUTBOUND_EVENTS_TOPIC_ENDPOINT); empty = not published.')
param outboundEventsTopicEndpoint string = ''

@description('Event Grid dead-letter container in the archive account (DEADLETTER_CONTAINER).')
param deadLetterContainerName string

@description('Redrive dead-lettered events every 5 minutes (DEADLETTER_REDRIVE_ON_SCHEDULE); off: only counted and alerted on, redriven by replay --deadletter.')
param deadLetterRedriveOnSchedule bool = true

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // checkov:skip=CKV_AZURE_225: Zone redundancy on Flex Consumption is offered in some regions only; enable it with the zoneRedundant parameter where available.
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

var baseSettings = [
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storageAccountName
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: applicationInsightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
  // The Python worker configures OpenTelemetry (the Azure Monitor distro) before it imports function_app.py,
  // exports the app's spans under the host's invocation, and tells the host to stop forwarding the worker's log
  // lines, so each is exported once with its fields (host.json: telemetryMode OpenTelemetry). Only this
  // package's logger: the Azure SDK's request logging stays out. README, Telemetry.
  {
    name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
    value: 'true'
  }
  {
    name: 'PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME'
    value: 'recording_pipeline'
  }
  // azure-functions-runtime, Python 3.13 and later, reads the PYTHON_APPLICATIONINSIGHTS_ names; the 4.x worker
  // of Python 3.11 and 3.12 reads PYTHON_ENABLE_OPENTELEMETRY and PYTHON_AZURE_MONITOR_LOGGER_NAME. Both are set.
  {
    name: 'PYTHON_ENABLE_OPENTELEMETRY'
    value: 'true'
  }
  {
    name: 'PYTHON_AZURE_MONITOR_LOGGER_NAME'
    value: 'recording_pipeline'
  }
  // Whole traces: the distro's default sampler (5 traces/s, rate-limited) ignores the host's sampled flag and
  // drops spans of one invocation independently. Parent-based: an invocation keeps or drops all its spans.
  {
    name: 'OTEL_TRACES_SAMPLER'
    value: 'parentbased_trace_id_ratio'
  }
  {
    name: 'OTEL_TRACES_SAMPLER_ARG'
    value: telemetrySamplingRatio
  }
  {
    name: 'ARCHIVE_STORAGE_ACCOUNT_URL'
    value: archiveStorageAccountUrl
  }
  {
    name: 'ARCHIVE_CONTAINER'
    value: archiveContainerName
  }
  {
    name: 'ARCHIVE_STATE_CONTAINER'
    value: archiveStateContainerName
  }
  {
    name: 'CHUNK_QUEUE_NAME'
    value: chunkQueueName
  }
  {
    name: 'ACS_RESOURCE_ID'
    value: acsResourceId
  }
  {
    name: 'RECORDING_ALLOWED_HOSTS'
    value: recordingAllowedHosts
  }
  {
    name: 'RECORDING_ALLOW_HTTP'
    value: 'false'
  }
  {
    name: 'RECORDING_RETENTION_HOURS'
    value: string(recordingRetentionHours)
  }
  {
    name: 'DEADLETTER_CONTAINER'
    value: deadLetterContainerName
  }
  {
    name: 'DEADLETTER_REDRIVE_ON_SCHEDULE'
    value: deadLetterRedriveOnSchedule ? 'true' : 'false'
  }
]

var hmacSettings = [
  {
    name: 'ACS_CONNECTION_STRING'
    value: '@Microsoft.KeyVault(SecretUri=${acsSecretUri})'
  }
]

var entraSettings = [
  {
    name: 'ACS_ENDPOINT'
    value: acsEndpoint
  }
]

var acsSettings = (acsAuthMode == 'hmac') ? hmacSettings : entraSettings

// Published with the managed identity (EventGrid Data Sender on the topic); no key setting in Azure.
var outboundEventsSettings = empty(outboundEventsTopicEndpoint) ? [] : [
  {
    name: 'OUTBOUND_EVENTS_TOPIC_ENDPOINT'
    value: outboundEventsTopicEndpoint
  }
]

// 2024-11-01: the first API version that takes functionAppConfig.siteUpdateStrategy (Microsoft's "Site update
// strategies in Flex Consumption" page).
resource site 'Microsoft.Web/sites@2024-11-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    // checkov:skip=CKV_AZURE_222: Event Grid delivers webhooks over the public internet; the endpoint is protected by a function key and HTTPS only.
    // checkov:skip=CKV_AZURE_17: Event Grid webhook delivery presents no client certificate; requests are authorized by the function key.
    // checkov:skip=CKV_AZURE_212: Flex Consumption scales per function (functionAppConfig.scaleAndConcurrency); siteConfig.numberOfWorkers does not apply.
    // checkov:skip=CKV_AZURE_213: App Service health check does not apply to Flex Consumption, which scales to zero; failures are covered by the alerts.
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
      siteUpdateStrategy: {
        type: siteUpdateStrategy
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: concat(baseSettings, acsSettings, outboundEventsSettings)
    }
  }
}

// No FTP and no basic-auth publishing: azd deploys with Entra ID.
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output webhookUrl string = 'https://${site.properties.defaultHostName}/api/recording-events'
