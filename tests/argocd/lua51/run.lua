-- Runs one of robofleet's Argo CD Lua scripts under C Lua 5.1 with the same contract as the Go
-- harness (tests/argocd/harness, gopher-lua as Argo CD embeds it):
--   lua5.1 run.lua health|discovery|action SCRIPT OBJECT.json
-- The script sees only what Argo CD's sandbox offers (base functions, table, os.time/os.date,
-- require("os")) and the global `obj`; strings have no methods (Argo CD opens no string library).
-- Prints the result as JSON; a Lua error exits 1 with the message on stderr.
local mode, scriptPath, objectPath = arg[1], arg[2], arg[3]
if mode == nil or scriptPath == nil or objectPath == nil then
  io.stderr:write("usage: lua5.1 run.lua health|discovery|action SCRIPT OBJECT.json\n")
  os.exit(2)
end

local byte, char, sub, find, format = string.byte, string.char, string.sub, string.find, string.format
local concat, insert, sort = table.concat, table.insert, table.sort
local floor, huge = math.floor, math.huge

-- JSON -----------------------------------------------------------------------------------------
-- Tables decoded from JSON objects are remembered, so an empty one is written back as {} (Argo CD
-- restores empty maps of the original object the same way after gopher-json wrote them as []).
local fromObject = setmetatable({}, {__mode = "k"})

local function decode(text)
  local pos = 1
  local function fail(what)
    error(format("JSON: %s at byte %d", what, pos), 0)
  end
  local function skip()
    pos = select(2, find(text, "^[ \t\r\n]*", pos)) + 1
  end
  local value
  local function str()
    pos = pos + 1
    local parts = {}
    while true do
      local c = sub(text, pos, pos)
      if c == "" then
        fail("unterminated string")
      elseif c == '"' then
        pos = pos + 1
        return concat(parts)
      elseif c == "\\" then
        local e = sub(text, pos + 1, pos + 1)
        local simple = {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t"}
        if simple[e] then
          insert(parts, simple[e])
          pos = pos + 2
        elseif e == "u" then
          local code = tonumber(sub(text, pos + 2, pos + 5), 16) or fail("bad \\u escape")
          pos = pos + 6
          if code >= 0xD800 and code <= 0xDBFF and sub(text, pos, pos + 1) == "\\u" then
            local low = tonumber(sub(text, pos + 2, pos + 5), 16) or fail("bad \\u escape")
            code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
            pos = pos + 6
          end
          if code < 0x80 then
            insert(parts, char(code))
          elseif code < 0x800 then
            insert(parts, char(0xC0 + floor(code / 0x40), 0x80 + code % 0x40))
          elseif code < 0x10000 then
            insert(parts, char(0xE0 + floor(code / 0x1000), 0x80 + floor(code / 0x40) % 0x40, 0x80 + code % 0x40))
          else
            insert(parts, char(0xF0 + floor(code / 0x40000), 0x80 + floor(code / 0x1000) % 0x40,
              0x80 + floor(code / 0x40) % 0x40, 0x80 + code % 0x40))
          end
        else
          fail("bad escape")
        end
      else
        local s, e = find(text, '^[^"\\]+', pos)
        insert(parts, sub(text, s, e))
        pos = e + 1
      end
    end
  end
  value = function()
    skip()
    local c = sub(text, pos, pos)
    if c == "{" then
      local t = {}
      fromObject[t] = true
      pos = pos + 1
      skip()
      if sub(text, pos, pos) == "}" then
        pos = pos + 1
        return t
      end
      while true do
        skip()
        if sub(text, pos, pos) ~= '"' then fail("expected a key") end
        local k = str()
        skip()
        if sub(text, pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        t[k] = value() -- null leaves the key out, as Argo CD's conversion does
        skip()
        c = sub(text, pos, pos)
        pos = pos + 1
        if c == "}" then return t end
        if c ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      local t, n = {}, 0
      pos = pos + 1
      skip()
      if sub(text, pos, pos) == "]" then
        pos = pos + 1
        return t
      end
      while true do
        n = n + 1
        t[n] = value()
        skip()
        c = sub(text, pos, pos)
        pos = pos + 1
        if c == "]" then return t end
        if c ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then
      return str()
    elseif sub(text, pos, pos + 3) == "true" then
      pos = pos + 4
      return true
    elseif sub(text, pos, pos + 4) == "false" then
      pos = pos + 5
      return false
    elseif sub(text, pos, pos + 3) == "null" then
      pos = pos + 4
      return nil
    end
    local s, e = find(text, "^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not s then fail("unexpected input") end
    pos = e + 1
    return tonumber(sub(text, s, e)) or fail("bad number")
  end
  local v = value()
  skip()
  if pos <= #text then fail("trailing input") end
  return v
end

local function encode(v, out)
  local t = type(v)
  if t == "nil" then
    insert(out, "null")
  elseif t == "boolean" then
    insert(out, v and "true" or "false")
  elseif t == "number" then
    if v ~= v or v == huge or v == -huge then error("JSON: cannot encode " .. tostring(v), 0) end
    if v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
      insert(out, format("%d", v))
    else
      insert(out, format("%.17g", v))
    end
  elseif t == "string" then
    insert(out, '"' .. v:gsub('[%c"\\]', function(c)
      local named = {['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t"}
      return named[c] or format("\\u%04x", byte(c))
    end) .. '"')
  elseif t == "table" then
    local n, keys = 0, {}
    for k in pairs(v) do
      n = n + 1
      insert(keys, k)
    end
    local isArray = n > 0
    for i = 1, n do
      if v[i] == nil then isArray = false end
    end
    if n == 0 then
      insert(out, fromObject[v] and "{}" or "[]")
    elseif isArray then
      insert(out, "[")
      for i = 1, n do
        if i > 1 then insert(out, ",") end
        encode(v[i], out)
      end
      insert(out, "]")
    else
      for i, k in ipairs(keys) do
        if type(k) ~= "string" then error("JSON: mixed or non-string keys", 0) end
      end
      sort(keys)
      insert(out, "{")
      for i, k in ipairs(keys) do
        if i > 1 then insert(out, ",") end
        encode(k, out)
        insert(out, ":")
        encode(v[k], out)
      end
      insert(out, "}")
    end
  else
    error("JSON: cannot encode a " .. t, 0)
  end
  return out
end

local function toJson(v)
  return concat(encode(v, {}))
end

-- Argo CD's sandbox ----------------------------------------------------------------------------
local function readAll(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local obj = decode(readAll(objectPath))
local chunk, err = loadstring(readAll(scriptPath), "=" .. scriptPath)
if not chunk then
  io.stderr:write(err, "\n")
  os.exit(1)
end
local safeOs = {time = os.time, date = os.date}
local env = {
  obj = obj, os = safeOs, table = table, _VERSION = _VERSION,
  require = function(name)
    if name == "os" then return safeOs end
    error("module '" .. tostring(name) .. "' not found")
  end,
}
for _, name in ipairs({"assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "print",
  "rawequal", "rawget", "rawset", "select", "setmetatable", "tonumber", "tostring", "type", "unpack",
  "xpcall", "load", "loadstring", "dofile", "loadfile", "collectgarbage", "getfenv", "setfenv"}) do
  env[name] = _G[name]
end
env._G = env
setfenv(chunk, env)

local stringMeta = debug.getmetatable("")
debug.setmetatable("", nil)
local ok, result = pcall(chunk)
debug.setmetatable("", stringMeta)
if not ok then
  io.stderr:write(tostring(result), "\n")
  os.exit(1)
end
if type(result) ~= "table" then
  io.stderr:write("expect table output from Lua script, not " .. type(result), "\n")
  os.exit(1)
end

local valid = {Unknown = true, Progressing = true, Suspended = true, Healthy = true, Degraded = true, Missing = true}
if mode == "health" then
  local status, message = result.status, result.message
  if not valid[status] then
    status, message = "Unknown", "Lua returned an invalid health status"
  end
  print(toJson({status = status or "", message = message or ""}))
elseif mode == "discovery" then
  local names, list = {}, {}
  for name in pairs(result) do insert(names, name) end
  sort(names)
  for _, name in ipairs(names) do
    local a = result[name]
    local entry = {name = name, disabled = false}
    if type(a) == "table" then
      if type(a.disabled) == "boolean" then entry.disabled = a.disabled end
      entry.iconClass = a.iconClass
      entry.displayName = a.displayName
    end
    insert(list, entry)
  end
  print(#list == 0 and "[]" or toJson(list))
elseif mode == "action" then
  print(toJson(result))
else
  io.stderr:write("unknown mode " .. mode .. "\n")
  os.exit(2)
end
