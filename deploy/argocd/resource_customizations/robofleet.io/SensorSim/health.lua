-- Argo CD health check for robofleet.io/SensorSim (see docs/gitops.md).
-- Runs in Argo CD's Lua sandbox: base, table and os.time/os.date only; no string or math library.
-- A template (spec.template: true) never runs by itself and is Healthy. Otherwise Progressing until
-- the operator has observed the current generation; then the Job-like phase maps: Pending/Running
-- Progressing, Succeeded Healthy, Failed (or Stalled=True) Degraded with the failed expectations.
-- Without a phase, the conditions decide.
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

if obj.spec ~= nil and obj.spec.template == true then
  hs.status = "Healthy"
  hs.message = "Template: runs only as a rollout preflight"
  return hs
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

local function failedExpectations()
  local failed = ""
  if status.assertions == nil then
    return failed
  end
  for _, a in ipairs(status.assertions) do
    if a.passed ~= true then
      failed = failed .. " [" .. text(a.name, "expectation") .. ": expected " .. text(a.expected, "?")
        .. ", observed " .. text(a.observed, "?") .. "]"
    end
  end
  return failed
end

if phase == "Failed" or (stalled ~= nil and stalled.status == "True") then
  hs.status = "Degraded"
  local prefix = ""
  if stalled ~= nil and stalled.status == "True" and stalled.reason ~= nil and stalled.reason ~= "Failed" then
    prefix = stalled.reason .. ": "
  end
  hs.message = prefix .. text(status.message, text(stalled ~= nil and stalled.message or nil, "Simulation failed"))
    .. failedExpectations()
  return hs
end
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = text(status.message, "Simulation succeeded")
  return hs
end
if phase == "Running" or phase == "Pending" then
  hs.message = text(status.message, "Simulation " .. phase)
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = text(reconciling.message, "Simulation running")
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready.message, "Simulation succeeded")
end
return hs
