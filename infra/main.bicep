// batchai in one resource group: the Function App (Flex Consumption, Python 3.11) and its storage,
// identities with least-privilege role assignments, Key Vault, monitoring, and the nodes' network.
// Compute (scale sets, container groups, file server VMs) is created at run time in the compute
// resource group, which may be this one.
targetScope = 'resourceGroup'

@description('Short lowercase prefix for resource names (3-11 characters).')
@minLength(3)
@maxLength(11)
param prefix string = 'batchai'

@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Resource group where the service creates scale sets, container groups and file server VMs.')
param computeResourceGroupName string = resourceGroup().name

@description('Address space of the nodes network.')
param vnetAddressPrefix string = '10.40.0.0/16'

@description('Subnet of nodes and file servers.')
param nodesSubnetPrefix string = '10.40.0.0/20'

@description('Subnet of the Function App (VNet integration; delegated to Microsoft.App/environments).')
param appSubnetPrefix string = '10.40.16.0/24'

@description('SSH public key put on nodes whose cluster gives none (empty: clusters must give one).')
param nodeSshPublicKey string = ''

@description('Give each cluster a public IP and a load balancer whose inbound NAT pool forwards one port per node to its sshd (remote login from outside the virtual network).')
param nodeSshNat bool = false

@description('Allow the service to create Azure Container Instances groups (aci clusters).')
param enableContainerInstances bool = true

@description('Client id of the app registration that stands for the API: callers get their Entra ID tokens for it.')
param apiClientId string

@description('The audiences (aud) the API accepts: the app registration\'s Application ID URI and client id.')
param apiAudiences array = [
  'api://${apiClientId}'
  apiClientId
]

@description('Object ids that hold Owner over everything the service serves without a role assignment (the deployer), so that someone can make the first role assignments.')
param ownerObjectIds array = []

var suffix = uniqueString(resourceGroup().id, prefix)
// Callers present Entra ID v2 access tokens of this tenant; App Service authentication and the app
// validate them against this same issuer and the same audiences.
var tokenIssuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
var tags = { application: 'batchai' }

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: { name: '${prefix}-${suffix}', location: location, tags: tags }
}

module network 'modules/network.bicep' = {
  name: 'network'
  params: {
    name: '${prefix}-${suffix}'
    location: location
    tags: tags
    addressPrefix: vnetAddressPrefix
    nodesSubnetPrefix: nodesSubnetPrefix
    appSubnetPrefix: appSubnetPrefix
  }
}

module identities 'modules/identities.bicep' = {
  name: 'identities'
  params: { prefix: prefix, suffix: suffix, location: location, tags: tags }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: take('${prefix}${suffix}', 24)
    location: location
    tags: tags
    subnetIds: [network.outputs.nodesSubnetId, network.outputs.appSubnetId]
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
    principalIds: [identities.outputs.servicePrincipalId, identities.outputs.nodesPrincipalId]
  }
}

// Users' data and ingress (job submissions queue, scoring manifests, registered data containers).
module dataStorage 'modules/storage.bicep' = {
  name: 'data-storage'
  params: {
    name: take('${prefix}data${suffix}', 24)
    location: location
    tags: tags
    subnetIds: [network.outputs.nodesSubnetId, network.outputs.appSubnetId]
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
    principalIds: [identities.outputs.servicePrincipalId]
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: take('kv-${prefix}-${suffix}', 24)
    location: location
    tags: tags
    readerPrincipalId: identities.outputs.servicePrincipalId
    storageAccountName: storage.outputs.name
    dataStorageAccountName: dataStorage.outputs.name
    subnetIds: [network.outputs.appSubnetId]
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module computeAccess 'modules/compute-access.bicep' = {
  name: 'compute-access'
  scope: resourceGroup(computeResourceGroupName)
  params: {
    servicePrincipalId: identities.outputs.servicePrincipalId
    enableContainerInstances: enableContainerInstances
  }
}

module nodesIdentityAccess 'modules/identity-operator.bicep' = {
  name: 'nodes-identity-operator'
  params: {
    identityName: identities.outputs.nodesName
    servicePrincipalId: identities.outputs.servicePrincipalId
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: '${prefix}-${suffix}'
    location: location
    tags: tags
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    serviceIdentityId: identities.outputs.serviceId
    serviceClientId: identities.outputs.serviceClientId
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    storageConnectionSecretUri: vault.outputs.storageConnectionSecretUri
    subnetId: network.outputs.appSubnetId
    tokenIssuer: tokenIssuer
    apiClientId: apiClientId
    apiAudiences: apiAudiences
    appSettings: {
      BATCHAI_PROVIDER: 'vmss'
      BATCHAI_LOCATION: location
      BATCHAI_AZURE_SUBSCRIPTION_ID: subscription().subscriptionId
      BATCHAI_COMPUTE_RESOURCE_GROUP: computeResourceGroupName
      BATCHAI_COMPUTE_LOCATION: location
      BATCHAI_SUBNET_ID: network.outputs.nodesSubnetId
      BATCHAI_IDENTITY_RESOURCE_ID: identities.outputs.nodesId
      BATCHAI_IDENTITY_CLIENT_ID: identities.outputs.nodesClientId
      BATCHAI_SSH_PUBLIC_KEY: nodeSshPublicKey
      // Network Contributor on the compute group (compute-access) covers the public IPs and load balancers.
      BATCHAI_NODE_SSH_NAT: nodeSshNat ? '1' : ''
      BATCHAI_STORAGE_ACCOUNT: storage.outputs.name
      // Nodes ask the app for their credentials with an IMDS token of their scale set's identity.
      BATCHAI_NODE_SERVICE_URL: 'https://${prefix}-${suffix}.azurewebsites.net'
      BATCHAI_NODE_TOKEN_AUDIENCE: 'api://${apiClientId}'
      BATCHAI_MESSAGE_KEY: '@Microsoft.KeyVault(VaultName=${vault.outputs.name};SecretName=message-key)'
      BATCHAI_SECRETS_KEY: '@Microsoft.KeyVault(VaultName=${vault.outputs.name};SecretName=secrets-key)'
      BATCHAI_DATA_CONNECTION_STRING: '@Microsoft.KeyVault(SecretUri=${vault.outputs.dataConnectionSecretUri})'
      BatchaiData__queueServiceUri: 'https://${dataStorage.outputs.name}.queue.${environment().suffixes.storage}'
      BatchaiData__blobServiceUri: dataStorage.outputs.blobEndpoint
      BatchaiData__credential: 'managedidentity'
      BatchaiData__clientId: identities.outputs.serviceClientId
      BATCHAI_OWNER_OBJECT_IDS: join(ownerObjectIds, ',')
      // Timer schedules (six-field NCRONTAB) the functions resolve from app settings.
      BATCHAI_RECONCILE_SCHEDULE: '0 */1 * * * *'
      BATCHAI_REAPER_SCHEDULE: '30 */1 * * * *'
      BATCHAI_ACI_SCHEDULE: '*/15 * * * * *'
      BATCHAI_SAFETY_SCHEDULE: '0 */1 * * * *'
      BATCHAI_SCORING_SCHEDULE: '*/10 * * * * *'
      BATCHAI_SWEEPS_SCHEDULE: '*/10 * * * * *'
    }
  }
}

output functionAppName string = functionApp.outputs.name
output apiUrl string = 'https://${functionApp.outputs.defaultHostName}'
output storageAccountName string = storage.outputs.name
output dataStorageAccountName string = dataStorage.outputs.name
output keyVaultName string = vault.outputs.name
output nodesSubnetId string = network.outputs.nodesSubnetId
