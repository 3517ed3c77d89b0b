// The service identity's rights on the compute resource group: scale sets and VMs, their NICs
// and subnet joins, and (optionally) container groups.
param servicePrincipalId string
param enableContainerInstances bool

var roles = concat([
  '9980e02c-c2be-4d73-94e8-173b1dc7cf3c' // Virtual Machine Contributor
  '4d97b98b-1d4f-4787-a291-c67834d212e7' // Network Contributor (NICs, joining the nodes subnet)
], enableContainerInstances ? [
  'b24988ac-6180-42a0-ab88-20f7382dd24c' // Contributor: container groups have no narrower built-in role
] : [])

resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in roles: {
  name: guid(resourceGroup().id, servicePrincipalId, role)
  properties: {
    principalId: servicePrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]
