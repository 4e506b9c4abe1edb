// Alerts as scheduled query rules on the workspace: no new rows for a window, and the services'
// periodic "stats" log lines (ContainerAppConsoleLogs_CL) reporting poison records waiting in
// storage, an open circuit breaker, or an Okta credential refused or unreadable. An optional action group e-mails someone.
//
// Every rule sets skipQueryValidation: a log alert's query is validated when the rule is created
// (https://learn.microsoft.com/en-us/azure/templates/microsoft.insights/scheduledqueryrules,
// properties.skipQueryValidation), and neither table exists yet on a first deployment:
// ContainerAppConsoleLogs_CL appears with the environment's first log lines
// (https://learn.microsoft.com/en-us/azure/container-apps/log-monitoring), and the Okta table
// is created in the same deployment (or, for the legacy sink, by the first post).
//
// A Basic table supports only simple log search alerts, which judge rows one by one and cannot
// see the absence of rows (https://learn.microsoft.com/en-us/azure/azure-monitor/alerts/alerts-types):
// on a Basic table the no-rows rule is not created; the stats rule (on the Analytics table
// ContainerAppConsoleLogs_CL) still reports a stalled pipeline.

param location string
param tags object
param namePrefix string
param workspaceResourceId string
param tableName string

@description('Plan of the Okta table: Analytics or Basic.')
param tablePlan string

@description('ISO 8601 window without new rows that raises the alert, e.g. PT1H.')
param noRowsWindow string

param alertEmail string

@description('Container app names whose stats lines are watched.')
param appNames array

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: '${namePrefix}-okta-sentinel-alerts'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'oktasentnl'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actions = empty(alertEmail)
  ? {}
  : {
      actionGroups: [
        actionGroup.id
      ]
    }

// Query text shared by the stats alerts: the JSON log line of a service, its fields either at the
// top level or under `fields` (tracing-subscriber's JSON layout).
var statsQuery = format(
  '''
ContainerAppConsoleLogs_CL
| where ContainerAppName_s in ({0})
| extend line = parse_json(Log_s)
| extend f = iff(isnotnull(line.fields), line.fields, line)
| where tostring(f.message) == "stats"
| extend s = parse_json(tostring(f.stats))
| extend poison_waiting = tolong(s.poison_waiting), breaker_open = tolong(s.breaker_open), okta_auth_failing = tolong(s.okta_auth_failing), credential_unreadable = tolong(s.okta_credential_unreadable)
| where poison_waiting > 0 or breaker_open == 1 or okta_auth_failing == 1 or credential_unreadable == 1
| project TimeGenerated, ContainerAppName_s, poison_waiting, breaker_open, okta_auth_failing, credential_unreadable, Log_s
''',
  join(map(appNames, n => '"${n}"'), ', ')
)

resource noRows 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = if (tablePlan != 'Basic') {
  name: '${namePrefix}-okta-no-new-rows'
  location: location
  tags: tags
  properties: {
    displayName: 'Okta: no new rows in ${tableName}'
    description: 'No Okta events reached ${tableName} within the window: check the collector and shipper apps, their readiness and their stats lines.'
    severity: 2
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: noRowsWindow
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          // The rule's window filters on TimeGenerated (= the event's published time).
          query: '${tableName}\n| project TimeGenerated'
          timeAggregation: 'Count'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

resource unhealthy 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-okta-pipeline-unhealthy'
  location: location
  tags: tags
  properties: {
    displayName: 'Okta: poison records, open breaker or failing Okta credential'
    description: 'A stats line of the collector or shipper reported poison records waiting in storage (shipper poison list, then requeue or purge), an open circuit breaker (sink unreachable or unauthorised), a credential Okta refuses (rotate it in Key Vault) or one the collector cannot read from Key Vault (secret missing, or no read access).'
    severity: 1
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: statsQuery
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
    autoMitigate: true
    actions: actions
  }
}

// The completeness audit (collector/src/audit/check.rs) logs a warning with message
// `audit: window incomplete` and a `record` field holding the window's evidence as JSON; an
// `incomplete_after_repair` of true means events stayed missing after the audit re-fetched and
// re-shipped the window (infra/README.md "Proof of completeness").
var auditQuery = format(
  '''
ContainerAppConsoleLogs_CL
| where ContainerAppName_s in ({0})
| extend line = parse_json(Log_s)
| extend f = iff(isnotnull(line.fields), line.fields, line)
| where tostring(f.message) == "audit: window incomplete"
| extend r = parse_json(tostring(f.record))
| where tobool(r.incomplete_after_repair)
| project TimeGenerated, ContainerAppName_s, window = tostring(f.window), Log_s
''',
  join(map(appNames, n => '"${n}"'), ', ')
)

resource auditIncomplete 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-okta-audit-incomplete'
  location: location
  tags: tags
  properties: {
    displayName: 'Okta: completeness audit: window incomplete after repair'
    description: 'The collector\'s completeness audit found Okta events missing from the table in a window even after repairing it: see the evidence under audit/{org}/windows/ and run `collector audit` for that window (infra/README.md, Proof of completeness).'
    severity: 1
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: auditQuery
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
    autoMitigate: true
    actions: actions
  }
}
