// Key Vault (RBAC, soft delete, purge protection) holding the storage connection strings, and the
// keys deploy.sh puts there (message-key: node messages are signed with it; secrets-key: secrets are
// sealed at rest with it).
param name string
param location string
param tags object
param readerPrincipalId string
param storageAccountName string
@description('The data account (users\' data and ingress): its connection string is kept beside the service\'s.')
param dataStorageAccountName string
param subnetIds array
param logAnalyticsWorkspaceId string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  #checkov:skip=CKV_AZURE_189:VNet service-endpoint rules need public network access on; networkAcls deny everything else (private endpoints are an operator choice)
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
      virtualNetworkRules: [for id in subnetIds: { id: id }]
    }
  }
}

resource dataAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageAccountName
}

resource dataConnection 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  #checkov:skip=CKV_AZURE_41:rewritten from the account's current key on every deployment; an expiry would stop the service without a rotation
  parent: vault
  name: 'data-connection-string'
  properties: {
    contentType: 'text/plain; azure-storage-connection-string'
    value: 'DefaultEndpointsProtocol=https;AccountName=${dataAccount.name};AccountKey=${dataAccount.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'
  }
}

resource storageConnection 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  #checkov:skip=CKV_AZURE_41:rewritten from the account's current key on every deployment; an expiry would stop the service without a rotation
  parent: vault
  name: 'storage-connection-string'
  properties: {
    contentType: 'text/plain; azure-storage-connection-string'
    value: 'DefaultEndpointsProtocol=https;AccountName=${account.name};AccountKey=${account.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, readerPrincipalId, 'secrets-user')
  scope: vault
  properties: {
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6') // Key Vault Secrets User
  }
}

resource audit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [ { categoryGroup: 'audit', enabled: true } ]
  }
}

output name string = vault.name
output storageConnectionSecretUri string = storageConnection.properties.secretUri
output dataConnectionSecretUri string = dataConnection.properties.secretUri
