// Lets the service assign the nodes' identity to the scale sets it creates.
param identityName string
param servicePrincipalId string

resource nodes 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

resource operator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(nodes.id, servicePrincipalId, 'managed-identity-operator')
  scope: nodes
  properties: {
    principalId: servicePrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'f1a07417-d97a-45cb-824c-7a7467783830') // Managed Identity Operator
  }
}
