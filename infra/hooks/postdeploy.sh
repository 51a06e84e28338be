#!/bin/sh
# azd postdeploy hook: create/update the Event Grid subscription
# (infra/subscription.bicep) after the function code is deployed.
#
# Event Grid validates a webhook while the subscription is being created, so
# this can only succeed once recording_events is deployed and answering. The
# values come from main.bicep outputs, which azd exports to hooks.
# Set SKIP_EVENTGRID_SUBSCRIPTION=true to skip (e.g. code-only redeploys).
set -eu

if [ "${SKIP_EVENTGRID_SUBSCRIPTION:-false}" = "true" ]; then
  echo "postdeploy: SKIP_EVENTGRID_SUBSCRIPTION=true, not touching the Event Grid subscription."
  exit 0
fi

missing=""
for var in AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME \
  EVENTGRID_SYSTEM_TOPIC_NAME EVENTGRID_RESOURCE_GROUP EVENTGRID_SUBSCRIPTION_ID \
  ARCHIVE_STORAGE_ACCOUNT_ID DEADLETTER_CONTAINER; do
  eval "value=\${$var:-}"
  if [ -z "$value" ]; then
    missing="$missing $var"
  fi
done
if [ -n "$missing" ]; then
  echo "postdeploy: missing azd environment values:$missing (run 'azd provision' first)." >&2
  exit 1
fi

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
template="$here/../subscription.bicep"
function_name="${RECORDING_EVENTS_FUNCTION:-recording_events}"

echo "postdeploy: waiting for function '$function_name' on $AZURE_FUNCTION_APP_NAME ..."
tries=0
until az functionapp function show \
  --subscription "$AZURE_SUBSCRIPTION_ID" \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name "$AZURE_FUNCTION_APP_NAME" \
  --function-name "$function_name" \
  --query name --output tsv --only-show-errors >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 30 ]; then
    echo "postdeploy: function '$function_name' not found after 5 minutes; is the code deployed?" >&2
    exit 1
  fi
  sleep 10
done

# Wake an instance so the handshake does not race a cold start (a 401 is fine).
if command -v curl >/dev/null 2>&1; then
  host=$(az functionapp show --subscription "$AZURE_SUBSCRIPTION_ID" \
    --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" \
    --query defaultHostName --output tsv --only-show-errors)
  curl --silent --output /dev/null --max-time 60 --request OPTIONS \
    "https://$host/api/recording-events" || true
fi

attempt=1
while :; do
  echo "postdeploy: deploying the Event Grid subscription (attempt $attempt) ..."
  if az deployment group create \
    --subscription "$EVENTGRID_SUBSCRIPTION_ID" \
    --resource-group "$EVENTGRID_RESOURCE_GROUP" \
    --name "recording-events-subscription" \
    --template-file "$template" \
    --parameters \
      systemTopicName="$EVENTGRID_SYSTEM_TOPIC_NAME" \
      functionAppName="$AZURE_FUNCTION_APP_NAME" \
      functionAppResourceGroup="$AZURE_RESOURCE_GROUP" \
      functionAppSubscriptionId="$AZURE_SUBSCRIPTION_ID" \
      functionName="$function_name" \
      deadLetterStorageAccountId="$ARCHIVE_STORAGE_ACCOUNT_ID" \
      deadLetterContainerName="$DEADLETTER_CONTAINER" \
    --only-show-errors --output none; then
    echo "postdeploy: Event Grid subscription is in place."
    break
  fi
  if [ "$attempt" -ge 3 ]; then
    echo "postdeploy: Event Grid subscription failed 3 times; see docs/DEPLOY.md (Event Grid subscription)." >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  sleep 30
done

# The deployment proves itself (README, "recording-archive check").
sh "$here/check.sh"
