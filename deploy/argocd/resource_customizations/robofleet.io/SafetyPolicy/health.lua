-- Argo CD health check for robofleet.io/SafetyPolicy (see docs/gitops.md).
-- Runs in Argo CD's Lua sandbox: base, table and os.time/os.date only; no string or math library.
-- Progressing until the operator has observed the current generation; then Stalled=True is
-- Degraded and status.phase maps as for InferenceService. A relaxing change waiting for approval
-- (condition ApprovalPending) keeps the phase's health: the previous policy is still enforced,
-- and a Suspended policy would block later sync waves. The message says what awaits approval.
local hs = {status = "Progressing", message = "Waiting for the operator to report status"}

local function condition(conditions, wanted)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function text(value, fallback)
  if value ~= nil and value ~= "" then
    return value
  end
  return fallback
end

local status = obj.status
if status == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition(status.conditions, "Stalled")
local reconciling = condition(status.conditions, "Reconciling")
local ready = condition(status.conditions, "Ready")
local approval = condition(status.conditions, "ApprovalPending")
local phase = status.phase

if (stalled ~= nil and stalled.status == "True") or phase == "Degraded" then
  hs.status = "Degraded"
  if stalled ~= nil and stalled.status == "True" then
    hs.message = text(stalled.reason, "Stalled") .. ": " .. text(status.message, text(stalled.message, ""))
  else
    local notReady = ""
    if ready ~= nil and ready.status == "False" then
      notReady = text(ready.reason, "NotReady") .. ": "
    end
    hs.message = notReady .. text(status.message, text(ready ~= nil and ready.message or nil, "Degraded"))
  end
  return hs
end

if phase == "Healthy" then
  hs.status = "Healthy"
  hs.message = text(status.message, "Every selected robot is monitored")
elseif phase == "Paused" then
  hs.status = "Suspended"
  hs.message = text(status.message, "Paused")
elseif phase == "Progressing" or phase == "Pending" then
  hs.message = text(status.message, "Placing safety monitors")
elseif reconciling ~= nil and reconciling.status == "True" then
  hs.message = text(reconciling.message, "Placing safety monitors")
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready.message, "Every selected robot is monitored")
elseif ready ~= nil then
  hs.message = text(ready.message, "Waiting for safety monitors")
end

if approval ~= nil and approval.status == "True" then
  local what = "a relaxing change waits for robofleet.io/approve"
  if status.pendingHash ~= nil and status.pendingHash ~= "" then
    what = what .. "=" .. status.pendingHash
  end
  hs.message = "Approval pending (the previous policy stays enforced): " .. text(approval.message, what)
    .. " | " .. hs.message
end
return hs
