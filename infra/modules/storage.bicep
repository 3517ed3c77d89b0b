// The service's storage account: Tables (state), Queues (work), Blobs (logs, outputs, deployment
// package). Reached from the nodes' and the Function App's subnets only; data-plane roles for the
// service and node identities.
param name string
param location string
param tags object
param subnetIds array
param logAnalyticsWorkspaceId string
param principalIds array

var roles = [
  'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor
  '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  #checkov:skip=CKV_AZURE_59:VNet service-endpoint rules need public network access on; networkAcls deny everything else (private endpoints are an operator choice)
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_GRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
      virtualNetworkRules: [for id in subnetIds: { id: id, action: 'Allow' }]
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource deployment 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: 'deploymentpackage'
  properties: { publicAccess: 'None' }
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource queueLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'queue-logs'
  scope: queues
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      { category: 'StorageRead', enabled: true }
      { category: 'StorageWrite', enabled: true }
      { category: 'StorageDelete', enabled: true }
    ]
  }
}

// One assignment per (principal, role): index i picks principal i / |roles| and role i % |roles|.
resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for i in range(0, length(principalIds) * length(roles)): {
  name: guid(account.id, principalIds[i / length(roles)], roles[i % length(roles)])
  scope: account
  properties: {
    principalId: principalIds[i / length(roles)]
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles[i % length(roles)])
  }
}]

output name string = account.name
output deploymentContainerName string = deployment.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
