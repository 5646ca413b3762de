-- Argo CD action "approve" for robofleet.io/SafetyPolicy (see docs/gitops.md).
-- Approves exactly the relaxing change the operator reports waiting (status.pendingHash) by
-- setting robofleet.io/approve=<hash>; a later, different change needs its own approval.
local status = obj.status or {}
local hash = status.pendingHash
if hash == nil or hash == "" then
  error("nothing to approve: status.pendingHash is empty")
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["robofleet.io/approve"] = hash
return obj
