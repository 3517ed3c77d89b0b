// The Function App on Flex Consumption (Python 3.11), identity-based host storage, integrated
// into the VNet, its storage connection string read from Key Vault by reference. Callers authenticate
// with Entra ID tokens: App Service authentication refuses a request without a valid one (401) and the
// app validates it again (BATCHAI_TOKEN_ISSUER, BATCHAI_API_AUDIENCE) with the same issuer and audiences.
param name string
param location string
param tags object
param storageAccountName string
param deploymentContainerName string
param serviceIdentityId string
param serviceClientId string
param appInsightsConnectionString string
param storageConnectionSecretUri string
param subnetId string
@description('The issuer of callers\' tokens (Entra ID v2: {login endpoint}{tenant}/v2.0).')
param tokenIssuer string
@description('Client id of the app registration that stands for the API.')
param apiClientId string
@description('The audiences callers\' tokens may carry.')
param apiAudiences array
param appSettings object

// Routes that authenticate their callers themselves (nodes, with their identity tokens for another
// audience) or need no caller: App Service authentication lets them through to the app.
var selfAuthenticatedPaths = [
  '/healthz'
  '/nodeagent/credentials'
  '/nodeagent/blobs'
  '/nodeagent/assignment'
  '/nodeagent/setup'
  '/nodeagent/events'
  '/nodeagent/exec'
  '/nodeagent/exec-result'
  '/nodeagent/join'
  '/nodeagent/node'
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  #checkov:skip=CKV_AZURE_225:Flex Consumption zone redundancy is regional and opt-in; the service's state lives in GRS storage, not on instances
  name: 'plan-${name}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true }
}

var baseSettings = {
  AzureWebJobsStorage__accountName: account.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: serviceClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  AZURE_CLIENT_ID: serviceClientId
  BATCHAI_STORAGE_CONNECTION_STRING: '@Microsoft.KeyVault(SecretUri=${storageConnectionSecretUri})'
  BATCHAI_TOKEN_ISSUER: tokenIssuer
  BATCHAI_API_AUDIENCE: join(apiAudiences, ',')
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  #checkov:skip=CKV_AZURE_17:callers authenticate with Entra ID bearer tokens (App Service authentication), not client certificates
  #checkov:skip=CKV_AZURE_222:the ARM-compatible API is public by design; authentication is enforced on every route
  #checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero on demand; timers and queues tolerate a cold start
  #checkov:skip=CKV_AZURE_213:Flex Consumption apps have no health check path setting; the Functions host restarts unhealthy workers
  name: 'func-${name}'
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${serviceIdentityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: serviceIdentityId
    virtualNetworkSubnetId: subnetId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${account.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: serviceIdentityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: 40
        instanceMemoryMB: 2048
      }
      runtime: { name: 'python', version: '3.11' }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      httpLoggingEnabled: true
      detailedErrorLoggingEnabled: true
      requestTracingEnabled: true
      appSettings: [for item in items(union(baseSettings, appSettings)): { name: item.key, value: item.value }]
    }
  }
}

resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  #checkov:skip=CKV_AZURE_13:checkov reads the v1 authsettings shape (properties.enabled); this authsettingsV2 resource sets platform.enabled and requireAuthentication
  #checkov:skip=CKV_AZURE_63:a 'web' site-config check applied to the auth resource; HTTP logging is on in the site's siteConfig
  #checkov:skip=CKV_AZURE_65:a 'web' site-config check applied to the auth resource; detailed errors are on in the site's siteConfig
  #checkov:skip=CKV_AZURE_66:a 'web' site-config check applied to the auth resource; request tracing is on in the site's siteConfig
  #checkov:skip=CKV_AZURE_80:a 'web' site-config check applied to the auth resource; the app runs Python, not .NET
  #checkov:skip=CKV_AZURE_88:a 'web' site-config check applied to the auth resource; Flex Consumption deploys from a blob container, not Azure Files
  #checkov:skip=CKV_AZURE_222:a 'web' site-config check applied to the auth resource; the API is public by design and authenticated
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: { enabled: true }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: selfAuthenticatedPaths
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          openIdIssuer: tokenIssuer
          clientId: apiClientId
        }
        validation: {
          allowedAudiences: apiAudiences
        }
      }
    }
    login: {
      tokenStore: { enabled: false }
    }
  }
}

output name string = app.name
output defaultHostName string = app.properties.defaultHostName
