# azd postdeploy hook (Windows): same steps as postdeploy.sh.
$ErrorActionPreference = 'Stop'

if ($env:SKIP_EVENTGRID_SUBSCRIPTION -eq 'true') {
    Write-Host 'postdeploy: SKIP_EVENTGRID_SUBSCRIPTION=true, not touching the Event Grid subscription.'
    exit 0
}

$required = @('AZURE_SUBSCRIPTION_ID', 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME',
    'EVENTGRID_SYSTEM_TOPIC_NAME', 'EVENTGRID_RESOURCE_GROUP', 'EVENTGRID_SUBSCRIPTION_ID',
    'ARCHIVE_STORAGE_ACCOUNT_ID', 'DEADLETTER_CONTAINER')
$missing = $required | Where-Object { -not [Environment]::GetEnvironmentVariable($_) }
if ($missing) {
    Write-Error "postdeploy: missing azd environment values: $($missing -join ', ') (run 'azd provision' first)."
    exit 1
}

$template = Join-Path $PSScriptRoot '..' 'subscription.bicep'
$functionName = if ($env:RECORDING_EVENTS_FUNCTION) { $env:RECORDING_EVENTS_FUNCTION } else { 'recording_events' }

Write-Host "postdeploy: waiting for function '$functionName' on $($env:AZURE_FUNCTION_APP_NAME) ..."
$found = $false
for ($i = 0; $i -lt 30; $i++) {
    az functionapp function show --subscription $env:AZURE_SUBSCRIPTION_ID `
        --resource-group $env:AZURE_RESOURCE_GROUP --name $env:AZURE_FUNCTION_APP_NAME `
        --function-name $functionName --query name --output tsv --only-show-errors *> $null
    if ($LASTEXITCODE -eq 0) { $found = $true; break }
    Start-Sleep -Seconds 10
}
if (-not $found) {
    Write-Error "postdeploy: function '$functionName' not found after 5 minutes; is the code deployed?"
    exit 1
}

$hostName = az functionapp show --subscription $env:AZURE_SUBSCRIPTION_ID `
    --resource-group $env:AZURE_RESOURCE_GROUP --name $env:AZURE_FUNCTION_APP_NAME `
    --query defaultHostName --output tsv --only-show-errors
try {
    Invoke-WebRequest -Method Options -Uri "https://$hostName/api/recording-events" -TimeoutSec 60 -SkipHttpErrorCheck | Out-Null
} catch { }

for ($attempt = 1; $attempt -le 3; $attempt++) {
    Write-Host "postdeploy: deploying the Event Grid subscription (attempt $attempt) ..."
    az deployment group create `
        --subscription $env:EVENTGRID_SUBSCRIPTION_ID `
        --resource-group $env:EVENTGRID_RESOURCE_GROUP `
        --name 'recording-events-subscription' `
        --template-file $template `
        --parameters `
            "systemTopicName=$($env:EVENTGRID_SYSTEM_TOPIC_NAME)" `
            "functionAppName=$($env:AZURE_FUNCTION_APP_NAME)" `
            "functionAppResourceGroup=$($env:AZURE_RESOURCE_GROUP)" `
            "functionAppSubscriptionId=$($env:AZURE_SUBSCRIPTION_ID)" `
            "functionName=$functionName" `
            "deadLetterStorageAccountId=$($env:ARCHIVE_STORAGE_ACCOUNT_ID)" `
            "deadLetterContainerName=$($env:DEADLETTER_CONTAINER)" `
        --only-show-errors --output none
    if ($LASTEXITCODE -eq 0) {
        Write-Host 'postdeploy: Event Grid subscription is in place.'
        Write-Host 'postdeploy: now prove the deployment from a POSIX shell: sh infra/hooks/check.sh (README, recording-archive check)'
        exit 0
    }
    if ($attempt -lt 3) { Start-Sleep -Seconds 30 }
}
Write-Error 'postdeploy: Event Grid subscription failed 3 times; see docs/DEPLOY.md (Event Grid subscription).'
exit 1
