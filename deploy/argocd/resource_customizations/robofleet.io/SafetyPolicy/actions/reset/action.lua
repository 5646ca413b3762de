-- Argo CD action "reset" for robofleet.io/SafetyPolicy (see docs/gitops.md).
-- Releases latched stops: robofleet.io/action: reset@<nonce>, relayed by the operator to every
-- monitor of the policy and acknowledged in status.lastAction.
local verb = "reset"
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local value = verb .. "@" .. tostring(os.time())
if obj.metadata.annotations["robofleet.io/action"] == value then
  -- the same verb twice within one second: keep the nonce new
  value = value .. "-1"
end
obj.metadata.annotations["robofleet.io/action"] = value
return obj
