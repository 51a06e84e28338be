// Action group + the alerts the runbook (docs/RUNBOOK.md) refers to.

@description('Name prefix for the alert rules.')
param namePrefix string

@description('Azure region of the log alert rules.')
param location string

@description('Tags applied to the resources.')
param tags object = {}

@description('Resource id of Application Insights (scope of the alerts).')
param applicationInsightsId string

@description('E-mail address that receives alerts; empty = action group without receivers.')
param alertEmail string = ''

@description('Name of the poison queue the Functions host moves failed chunk jobs to.')
param poisonQueueName string

@description('Container Event Grid dead-letters into (DEADLETTER_CONTAINER).')
param deadLetterContainerName string

@description('Failed function executions in 15 minutes that raise the failure alert.')
@minValue(1)
param failureThreshold int = 5

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${namePrefix}-ag'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'recarchive'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Azure Monitor queue metrics are per account, not per queue, so "poison queue
// length > 0" is detected from the host's own log line when it moves a message:
// "Message has reached MaxDequeueCount of N. Moving message to queue '<q>-poison'."
resource poisonAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-poison-queue'
  location: location
  tags: tags
  properties: {
    displayName: 'Recording chunk failing or moved to the poison queue'
    description: 'A chunk job exhausted its attempts: it is retried later while the deadline is far, else it sits in ${poisonQueueName}. Find the cause; replay --poison.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          // The worker quarantines a job itself on its last attempt (with the error); the host moves it only
          // when that attempt never finished (timeout, crash). Either way the message names the poison queue.
          // Fires early: "still failing" is logged each time a job exhausts its attempts and is put back for later.
          // The poison_depth timer's gauge sees what the host poisoned itself: in OpenTelemetry mode, with the
          // worker exporting, the host drops its Microsoft.Azure.WebJobs.* lines (MaxDequeueCount among them).
          query: 'union (traces | where message has "recording chunk still failing after" or (message has "${poisonQueueName}" and (message has "recording chunk failed after" or message has "MaxDequeueCount"))), (customMetrics | where name == "recording.poison_queue.depth" and value > 0)'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource lostChunkAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-lost-chunk'
  location: location
  tags: tags
  properties: {
    displayName: 'Recording chunk lost'
    description: 'A chunk was gone from ACS before it was archived; a _lost/ marker was written.'
    severity: 0
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message contains "recording chunk lost"'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// An app setting the app cannot use (e.g. a Key Vault reference not resolved yet): the queue trigger is not
// declared, so no chunk is archived until it is fixed, and the webhook answers 503.
resource configurationAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-configuration-error'
  location: location
  tags: tags
  properties: {
    displayName: 'Recording archive misconfigured: no chunk is archived'
    description: 'The app cannot use its settings; it takes no queue message and answers 503 to Event Grid until they are fixed and the app restarts.'
    severity: 0
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message has "configuration error"'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// A recording event the webhook refused (kept whole in the archive's _rejected/ with its reason), or a delivery it
// refused whole (not events, over the limits): Event Grid dead-letters a 400 or 413 at once, so the event is lost
// within ACS's 24 hours unless someone acts. app/webhook.py logs one line per refusal.
resource refusedEventAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-refused-event'
  location: location
  tags: tags
  properties: {
    displayName: 'Recording event refused'
    description: 'The webhook refused a recording event (kept with its reason in _rejected/ in the archive) or a whole delivery (then dead-lettered). Read the reason: an event refused for what it says is refused again when redriven; a new event shape needs a new app version.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: 'traces | where message startswith "rejected event" or message startswith "rejected delivery"'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// An event Event Grid gave up on (30 attempts in 24 hours, or at once on 400, 401, 403, 413) is in the dead-letter
// container. The deadletter_redrive timer (every 5 minutes, app/deadletter.py) logs each blob it finds and reports
// how many still wait as a gauge: the alert fires on the first, and again every 5 minutes while any waits (scheduled
// redrive off, or failing).
resource deadLetterAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-dead-lettered-event'
  location: location
  tags: tags
  properties: {
    displayName: 'Recording event dead-lettered by Event Grid'
    description: 'Event Grid gave up delivering a recording event and wrote it to ${deadLetterContainerName}. The app redrives it through the webhook path and records the outcome beside it; while one waits, replay --deadletter.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: 'union (traces | where message startswith "dead-lettered event found"), (customMetrics | where name == "recording.deadletter.waiting" and value > 0)'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// The fixity audit (function_app.fixity_audit, hourly: app/fixity) re-hashes a slice of the archive each run: a
// chunk whose media no longer hashes to its chain-of-custody record, or a blob that is gone, is evidence changed or
// lost under WORM. Its error line and its recording.fixity.chunks points by result say so.
resource fixityAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-fixity-failure'
  location: location
  tags: tags
  properties: {
    displayName: 'Archived recording failed its fixity check'
    description: 'The fixity audit found archived media that no longer matches its chain-of-custody record, or a blob that is missing. Do not delete anything; see the runbook.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: 'union (traces | where message has "fixity check failed"), (customMetrics | where name == "recording.fixity.chunks" and tostring(customDimensions.result) in ("mismatch", "missing"))'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource failureAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-function-failures'
  location: 'global'
  tags: tags
  properties: {
    description: 'Function executions (webhook or chunk worker) are failing.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'failedRequests'
          metricNamespace: 'microsoft.insights/components'
          metricName: 'requests/failed'
          timeAggregation: 'Count'
          operator: 'GreaterThanOrEqual'
          threshold: failureThreshold
        }
      ]
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

output actionGroupId string = actionGroup.id
