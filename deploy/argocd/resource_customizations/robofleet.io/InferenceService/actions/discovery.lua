-- Argo CD action discovery for robofleet.io/InferenceService (see docs/gitops.md).
-- Every verb is listed; the ones that do not apply to the current status are disabled:
-- pause unless already paused; resume only when paused by the verb (spec.paused in git wins);
-- promote, promote-full and abort only while a rollout runs or is paused (promote not while
-- spec.paused holds it); retry only after an abort.
local actions = {}
local spec = obj.spec or {}
local status = obj.status or {}
local phase = status.phase
local reconciling = nil
if status.conditions ~= nil then
  for _, c in ipairs(status.conditions) do
    if c.type == "Reconciling" then
      reconciling = c
    end
  end
end
-- The phase decides; without one (an older status), the Reconciling condition does.
local paused = phase == "Paused"
  or (phase == nil and reconciling ~= nil and reconciling.status == "False" and reconciling.reason == "Paused")
local progressing = phase == "Progressing" or (phase == nil and reconciling ~= nil and reconciling.status == "True")
local pausedInGit = spec.paused == true
local rolling = status.canaryRevision ~= nil and (progressing or paused)

actions["pause"] = {
  disabled = pausedInGit or paused,
  iconClass = "fa fa-fw fa-pause-circle",
  displayName = "Pause rollout",
}
actions["resume"] = {
  disabled = pausedInGit or not paused,
  iconClass = "fa fa-fw fa-play-circle",
  displayName = "Resume rollout",
}
actions["promote"] = {
  disabled = not rolling or pausedInGit,
  iconClass = "fa fa-fw fa-forward",
  displayName = "Promote: skip this wave's pause and analysis",
}
actions["promote-full"] = {
  disabled = not rolling or pausedInGit,
  iconClass = "fa fa-fw fa-fast-forward",
  displayName = "Promote to every robot",
}
actions["abort"] = {
  disabled = not rolling,
  iconClass = "fa fa-fw fa-undo",
  displayName = "Abort: return robots to the stable revision",
}
actions["retry"] = {
  disabled = status.abortedRevision == nil or status.abortedRevision == "",
  iconClass = "fa fa-fw fa-redo",
  displayName = "Retry the aborted revision",
}
return actions
