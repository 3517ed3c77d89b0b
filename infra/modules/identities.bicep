// Two user-assigned identities: the service's (ARM, storage, Key Vault) and the nodes' (storage only).
param prefix string
param suffix string
param location string
param tags object

resource service 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${prefix}-service-${suffix}'
  location: location
  tags: tags
}

resource nodes 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${prefix}-nodes-${suffix}'
  location: location
  tags: tags
}

output serviceId string = service.id
output serviceClientId string = service.properties.clientId
output servicePrincipalId string = service.properties.principalId
output nodesId string = nodes.id
output nodesName string = nodes.name
output nodesClientId string = nodes.properties.clientId
output nodesPrincipalId string = nodes.properties.principalId
