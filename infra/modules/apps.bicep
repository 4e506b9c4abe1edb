// The Container Apps environment, one collector app per Okta org (exactly one replica; a blob
// lease makes a second one a harmless standby anyway) and the shipper app, scaled by KEDA on the
// queue length with the shipper's own identity (azureQueue.identity needs 2025-01-01 or later).
// The environment sends console logs (the services' JSON log lines, "stats" included) to the
// workspace as ContainerAppConsoleLogs_CL.

param location string
param tags object
param namePrefix string
param suffix string
param image string

@description('Registry login server pulled with the apps\' identities; empty for a public image.')
param registryServer string

param workspaceName string
param workspaceSubscriptionId string
param workspaceResourceGroup string

param storageAccountName string
param queueEndpoint string
param blobEndpoint string
param queueName string
param containerName string
param keyVaultUrl string

@description('Per org: { domain, auth, clientId, keyId, start, allowRestamp, secretName, identityId, identityClientId }.')
param collectors array

param shipperIdentityId string
param shipperIdentityClientId string

@description('The ops job\'s own identity (poison commands only).')
param opsIdentityId string
param opsIdentityClientId string

param sink string

@description('Token audience of the Logs Ingestion API in this cloud (from environment() in main.bicep).')
param monitorAudience string
param logsIngestionEndpoint string
param dcrImmutableId string
param streamName string
param workspaceKeySecretName string
param shipperMinReplicas int
param shipperMaxReplicas int

@description('vCPU per shipper replica, one of the consumption plan\'s sizes (main.bicep).')
param shipperCpu string
param shipperQueueLength int
param shipperConcurrency int
param shipperMaxDequeue int
param oktaRateLimitReserve string
param terminationGracePeriodSeconds int

@description('The workspace customer id the completeness audit queries (LOG_ANALYTICS_WORKSPACE_ID); empty turns the audit off.')
param auditWorkspaceId string

// The consumption plan's vCPU → memory pairs
// (https://learn.microsoft.com/en-us/azure/container-apps/containers#allocations).
var memoryForCpu = {
  '0.25': '0.5Gi'
  '0.5': '1.0Gi'
  '0.75': '1.5Gi'
  '1.0': '2.0Gi'
  '1.25': '2.5Gi'
  '1.5': '3.0Gi'
  '1.75': '3.5Gi'
  '2.0': '4.0Gi'
}

var collectorPort = 9464
var shipperPort = 9465
var useLegacySink = sink == 'data-collector'

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroup)
}

resource managedEnvironment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${namePrefix}-cae-${suffix}'
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: workspace.properties.customerId
        sharedKey: workspace.listKeys().primarySharedKey
      }
    }
  }
}

// Settings both services share (docs/design.md §3). Storage endpoints come from the account so
// sovereign clouds and custom domains need no change.
var commonEnv = [
  {
    name: 'AZURE_STORAGE_ACCOUNT'
    value: storageAccountName
  }
  {
    name: 'AZURE_STORAGE_QUEUE_ENDPOINT'
    value: queueEndpoint
  }
  {
    name: 'AZURE_STORAGE_BLOB_ENDPOINT'
    value: blobEndpoint
  }
  {
    name: 'OKTA_QUEUE'
    value: queueName
  }
  {
    name: 'OKTA_CONTAINER'
    value: containerName
  }
  {
    name: 'LOG_FORMAT'
    value: 'json'
  }
]

// Probes check the process only (https://learn.microsoft.com/en-us/azure/container-apps/health-probes).
// These apps have no ingress, so readiness routes no traffic; a readiness probe on /readyz
// (storage, Key Vault, Okta, sink) would keep a revision from provisioning while role
// assignments propagate or before the Okta secret is set ("Operation expired"). /healthz fails
// only when the main loop stopped turning (common/src/health.rs); dependency health goes to
// /readyz, the metrics, the stats alerts and `doctor`.
func probes(port int) array => [
  {
    type: 'Liveness'
    httpGet: {
      path: '/healthz'
      port: port
    }
    initialDelaySeconds: 5
    periodSeconds: 15
    failureThreshold: 4
  }
  {
    type: 'Readiness'
    httpGet: {
      path: '/healthz'
      port: port
    }
    periodSeconds: 10
    failureThreshold: 3
  }
]

// Each collector's env, shared by its app and its doctor job so they cannot drift.
var collectorEnvs = [
  for c in collectors: concat(
    commonEnv,
    [
      {
        name: 'AZURE_CLIENT_ID'
        value: c.identityClientId
      }
      {
        name: 'KEY_VAULT_URL'
        value: keyVaultUrl
      }
      {
        name: 'OKTA_DOMAIN'
        value: c.domain
      }
      {
        name: 'OKTA_RATE_LIMIT_RESERVE'
        value: oktaRateLimitReserve
      }
      {
        name: 'HTTP_ADDR'
        value: '0.0.0.0:${collectorPort}'
      }
    ],
    c.auth == 'token'
      ? [
          {
            name: 'OKTA_API_TOKEN_SECRET'
            value: c.secretName
          }
        ]
      : [
          {
            name: 'OKTA_CLIENT_ID'
            value: c.clientId
          }
          {
            name: 'OKTA_PRIVATE_KEY_SECRET'
            value: c.secretName
          }
        ],
    empty(c.keyId)
      ? []
      : [
          {
            name: 'OKTA_KEY_ID'
            value: c.keyId
          }
        ],
    empty(c.start)
      ? []
      : [
          {
            name: 'OKTA_START'
            value: c.start
          }
        ],
    c.allowRestamp
      ? [
          {
            name: 'OKTA_ALLOW_RESTAMP'
            value: 'true'
          }
        ]
      : [],
    // The completeness audit (collector/src/audit/): reads Okta_CL only (audit-access.bicep).
    empty(auditWorkspaceId)
      ? [
          {
            name: 'AUDIT_ENABLED'
            value: 'false'
          }
        ]
      : [
          {
            name: 'LOG_ANALYTICS_WORKSPACE_ID'
            value: auditWorkspaceId
          }
        ]
  )
]

// The shipper's env, shared by its app and its doctor job so they cannot drift.
var shipperEnv = concat(
  commonEnv,
  [
    {
      name: 'AZURE_CLIENT_ID'
      value: shipperIdentityClientId
    }
    {
      name: 'SINK'
      value: sink
    }
    {
      name: 'AZURE_MONITOR_AUDIENCE'
      value: monitorAudience
    }
    {
      name: 'SHIPPER_CONCURRENCY'
      value: string(shipperConcurrency)
    }
    {
      name: 'SHIPPER_MAX_DEQUEUE'
      value: string(shipperMaxDequeue)
    }
    {
      // Finish or hand back in-flight pages before Container Apps kills the replica.
      name: 'SHUTDOWN_GRACE'
      value: '${terminationGracePeriodSeconds - 15}s'
    }
    {
      name: 'HTTP_ADDR'
      value: '0.0.0.0:${shipperPort}'
    }
  ],
  useLegacySink
    ? [
        {
          name: 'KEY_VAULT_URL'
          value: keyVaultUrl
        }
        {
          name: 'WORKSPACE_ID'
          value: workspace.properties.customerId
        }
        {
          name: 'WORKSPACE_KEY_SECRET'
          value: workspaceKeySecretName
        }
      ]
    : [
        {
          name: 'LOGS_INGESTION_ENDPOINT'
          value: logsIngestionEndpoint
        }
        {
          name: 'DCR_IMMUTABLE_ID'
          value: dcrImmutableId
        }
        {
          name: 'DCR_STREAM'
          value: streamName
        }
      ]
)

resource collectorApps 'Microsoft.App/containerApps@2025-01-01' = [
  for (c, i) in collectors: {
    name: 'col-${uniqueString(c.domain, suffix)}'
    location: location
    tags: union(tags, {
      'okta-domain': c.domain
      'okta-sentinel-role': 'collector'
    })
    identity: {
      type: 'UserAssigned'
      userAssignedIdentities: {
        '${c.identityId}': {}
      }
    }
    properties: {
      environmentId: managedEnvironment.id
      configuration: {
        activeRevisionsMode: 'Single'
        registries: empty(registryServer)
          ? []
          : [
              {
                server: registryServer
                identity: c.identityId
              }
            ]
      }
      template: {
        terminationGracePeriodSeconds: terminationGracePeriodSeconds
        containers: [
          {
            name: 'collector'
            image: image
            command: [
              '/usr/local/bin/collector'
            ]
            args: [
              'run'
            ]
            resources: {
              cpu: json('0.25')
              memory: '0.5Gi'
            }
            env: collectorEnvs[i]
            probes: probes(collectorPort)
          }
        ]
        scale: {
          minReplicas: 1
          maxReplicas: 1
        }
      }
    }
  }
]

resource shipperApp 'Microsoft.App/containerApps@2025-01-01' = {
  name: 'shipper-${suffix}'
  location: location
  tags: union(tags, {
    'okta-sentinel-role': 'shipper'
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${shipperIdentityId}': {}
    }
  }
  properties: {
    environmentId: managedEnvironment.id
    configuration: {
      activeRevisionsMode: 'Single'
      registries: empty(registryServer)
        ? []
        : [
            {
              server: registryServer
              identity: shipperIdentityId
            }
          ]
    }
    template: {
      terminationGracePeriodSeconds: terminationGracePeriodSeconds
      containers: [
        {
          name: 'shipper'
          image: image
          command: [
            '/usr/local/bin/shipper'
          ]
          args: [
            'run'
          ]
          resources: {
            cpu: json(shipperCpu)
            memory: memoryForCpu[shipperCpu]
          }
          env: shipperEnv
          probes: probes(shipperPort)
        }
      ]
      scale: {
        minReplicas: shipperMinReplicas
        maxReplicas: shipperMaxReplicas
        rules: [
          {
            name: 'okta-pages-backlog'
            azureQueue: {
              accountName: storageAccountName
              queueName: queueName
              queueLength: shipperQueueLength
              identity: shipperIdentityId
            }
          }
        ]
      }
    }
  }
}

// The operator's way to run the shipper's poison commands (`poison list | show | requeue |
// purge`) with its own identity, limited to what those commands do (roles.bicep): a job started
// by hand. Its command line is changed per execution with the YAML flow of infra/README.md §6
// (`job show --query properties.template` → edit `args` → `job start --yaml`; example:
// infra/shipper-ops.example.yaml): `job start --args` refuses arguments that start with `--`,
// and a container override given on the command line replaces the job's env
// (https://learn.microsoft.com/en-us/rest/api/resource-manager/containerapps/jobs/start: the
// start body is a whole JobExecutionTemplate). `az containerapp exec` cannot pass arguments,
// and the distroless image has no shell.
resource shipperOpsJob 'Microsoft.App/jobs@2024-03-01' = {
  name: 'shipper-ops-${suffix}'
  location: location
  tags: union(tags, {
    'okta-sentinel-role': 'shipper-ops'
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${opsIdentityId}': {}
    }
  }
  properties: {
    environmentId: managedEnvironment.id
    configuration: {
      triggerType: 'Manual'
      replicaTimeout: 3600
      replicaRetryLimit: 0
      manualTriggerConfig: {
        parallelism: 1
        replicaCompletionCount: 1
      }
      registries: empty(registryServer)
        ? []
        : [
            {
              server: registryServer
              identity: opsIdentityId
            }
          ]
    }
    template: {
      containers: [
        {
          name: 'shipper-ops'
          image: image
          command: [
            '/usr/local/bin/shipper'
          ]
          // Harmless by default: started without --args, the job lists the records.
          args: [
            'poison'
            'list'
          ]
          resources: {
            cpu: json('0.25')
            memory: '0.5Gi'
          }
          env: concat(commonEnv, [
            {
              name: 'AZURE_CLIENT_ID'
              value: opsIdentityClientId
            }
          ])
        }
      ]
    }
  }
}

// `doctor` as manual jobs (infra/README.md "After deploying, run doctor"): each runs the
// service's binary with `doctor`, the service's own identity and the very env of its app (the
// same variable), so it checks exactly what the app will use, with no more rights than the app
// (common/src/doctor/storage.rs). Container Apps job names are at most 32 characters, so the
// collector's job is named like its app (`coldoc-` + the app's hash) and tagged with its domain.
resource shipperDoctorJob 'Microsoft.App/jobs@2024-03-01' = {
  name: 'shipper-doctor-${suffix}'
  location: location
  tags: union(tags, {
    'okta-sentinel-role': 'shipper-doctor'
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${shipperIdentityId}': {}
    }
  }
  properties: {
    environmentId: managedEnvironment.id
    configuration: {
      triggerType: 'Manual'
      replicaTimeout: 600
      replicaRetryLimit: 0
      manualTriggerConfig: {
        parallelism: 1
        replicaCompletionCount: 1
      }
      registries: empty(registryServer)
        ? []
        : [
            {
              server: registryServer
              identity: shipperIdentityId
            }
          ]
    }
    template: {
      containers: [
        {
          name: 'shipper-doctor'
          image: image
          command: [
            '/usr/local/bin/shipper'
          ]
          args: [
            'doctor'
          ]
          resources: {
            cpu: json('0.25')
            memory: '0.5Gi'
          }
          env: shipperEnv
        }
      ]
    }
  }
}

resource collectorDoctorJobs 'Microsoft.App/jobs@2024-03-01' = [
  for (c, i) in collectors: {
    name: 'coldoc-${uniqueString(c.domain, suffix)}'
    location: location
    tags: union(tags, {
      'okta-domain': c.domain
      'okta-sentinel-role': 'collector-doctor'
    })
    identity: {
      type: 'UserAssigned'
      userAssignedIdentities: {
        '${c.identityId}': {}
      }
    }
    properties: {
      environmentId: managedEnvironment.id
      configuration: {
        triggerType: 'Manual'
        replicaTimeout: 600
        replicaRetryLimit: 0
        manualTriggerConfig: {
          parallelism: 1
          replicaCompletionCount: 1
        }
        registries: empty(registryServer)
          ? []
          : [
              {
                server: registryServer
                identity: c.identityId
              }
            ]
      }
      template: {
        containers: [
          {
            name: 'collector-doctor'
            image: image
            command: [
              '/usr/local/bin/collector'
            ]
            args: [
              'doctor'
            ]
            resources: {
              cpu: json('0.25')
              memory: '0.5Gi'
            }
            env: collectorEnvs[i]
          }
        ]
      }
    }
  }
]

output collectorAppNames array = [for (c, i) in collectors: collectorApps[i].name]
output shipperAppName string = shipperApp.name
output shipperOpsJobName string = shipperOpsJob.name
output shipperDoctorJobName string = shipperDoctorJob.name
output collectorDoctorJobNames array = [for (c, i) in collectors: collectorDoctorJobs[i].name]
