-- Argo CD action discovery for robofleet.io/SafetyPolicy (see docs/gitops.md).
-- approve is enabled only while a relaxing change waits (condition ApprovalPending=True with a
-- status.pendingHash not yet approved); reset only for Latched policies.
local actions = {}
local spec = obj.spec or {}
local status = obj.status or {}
local annotations = obj.metadata.annotations or {}

local pending = false
if status.conditions ~= nil then
  for _, c in ipairs(status.conditions) do
    if c.type == "ApprovalPending" and c.status == "True" then
      pending = true
    end
  end
end
local hash = status.pendingHash
-- not once approved: the annotation names it, or the operator has acted on it
local approvable = pending and hash ~= nil and hash ~= "" and annotations["robofleet.io/approve"] ~= hash
  and status.approvedHash ~= hash

local latched = spec.release ~= nil and spec.release.mode == "Latched"

actions["approve"] = {
  disabled = not approvable,
  iconClass = "fa fa-fw fa-check-circle",
  displayName = "Approve the pending relaxation",
}
actions["reset"] = {
  disabled = not latched,
  iconClass = "fa fa-fw fa-unlock",
  displayName = "Reset latched stops",
}
return actions
