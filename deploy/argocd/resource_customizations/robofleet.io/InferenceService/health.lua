-- Argo CD health check for robofleet.io/InferenceService (see docs/gitops.md).
-- Runs in Argo CD's Lua sandbox: base, table and os.time/os.date only; no string or math library.
-- Progressing until the operator has observed the current generation; then Stalled=True is
-- Degraded, and status.phase maps Healthy, Progressing/Pending, Paused (Suspended) and Degraded;
-- without a phase, the conditions decide.
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
local phase = status.phase

if (stalled ~= nil and stalled.status == "True") or phase == "Degraded" then
  hs.status = "Degraded"
  if stalled ~= nil and stalled.status == "True" then
    hs.message = text(stalled.reason, "Stalled") .. ": " .. text(status.message, text(stalled.message, ""))
  else
    hs.message = text(status.message, "Degraded")
  end
  return hs
end
if phase == "Healthy" then
  hs.status = "Healthy"
  hs.message = text(status.message, "Every selected robot serves the stable revision")
  return hs
end
if phase == "Paused" then
  hs.status = "Suspended"
  hs.message = text(status.message, "Rollout paused")
  return hs
end
if phase == "Progressing" or phase == "Pending" then
  hs.status = "Progressing"
  hs.message = text(status.message, "Rollout in progress")
  return hs
end

-- No phase: fall back to the conditions.
if reconciling ~= nil and reconciling.status == "False" and reconciling.reason == "Paused" then
  hs.status = "Suspended"
  hs.message = text(reconciling.message, "Rollout paused")
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = text(reconciling.message, "Rollout in progress")
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready.message, "Every selected robot serves an approved revision")
  return hs
end
if ready ~= nil then
  hs.message = text(ready.message, "Waiting for robots to become ready")
end
return hs
