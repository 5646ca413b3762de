-- Argo CD action "retry" for robofleet.io/InferenceService (see docs/gitops.md).
-- Verbs are one-shot annotations robofleet.io/action: <verb>@<nonce>; the operator acts once per
-- nonce and acknowledges it in status.lastAction. It never writes spec, and nothing here does.
local verb = "retry"
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
