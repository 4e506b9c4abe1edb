// Example parameters: copy to main.bicepparam, edit, then
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam
// Credentials are read from environment variables at deployment time so they never land in a
// file; unset variables leave the secret untouched (set it later with az keyvault secret set).
using 'main.bicep'

param oktaOrgs = [
  {
    domain: 'acme.okta.com'
    auth: 'token'
  }
  {
    domain: 'acme-eu.okta-emea.com'
    auth: 'oauth'
    clientId: '0oa1example2client3id'
    keyId: 'okta-sentinel-1'
  }
]

param oktaCredentials = {
  'acme.okta.com': readEnvironmentVariable('OKTA_TOKEN_ACME', '')
  'acme-eu.okta-emea.com': readEnvironmentVariable('OKTA_PRIVATE_KEY_ACME_EU', '')
}

param image = 'myregistry.azurecr.io/okta-sentinel:1.0.0'
param registryName = 'myregistry'

// Use the Sentinel workspace you already have (empty creates a new one).
param existingWorkspaceResourceId = ''

// true when Okta_CL already exists there (a classic table migrated with
// `az monitor log-analytics workspace table migrate`): columns are then only added, never
// deleted or retyped, and the 46-character column is kept (overlongColumns 'auto').
param existingTable = false

param shipperMaxReplicas = 10
// vCPU per shipper replica (memory twice it in GiB): 0.25 … 2.0.
param shipperCpu = '0.25'
param alertEmail = 'soc@example.com'
