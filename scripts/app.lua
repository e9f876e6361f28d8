-- app.lua — moongate's default app: echo + chat rooms.
--
-- Protocol (text messages, one line each):
--   /join ROOM   join ROOM (leaving the current room, if any)
--   /nick NAME   set your display name
--   /who         list the members of your room
--   anything     in a room: sent to everyone there as "NICK: text"
--                in no room: echoed back as "received: text"
-- Lines from the server that start with "* " are notices.
--
-- Reload-safe by design: `kill -HUP` (or POST /reload on the admin port)
-- loads this file into a fresh Lua state, so globals and upvalues start
-- over. Everything that must outlive a reload lives in the core instead:
--   conn:set("room"/"nick")        per-connection attributes
--   conn:subscribe("room:NAME")    topic subscriptions (used by gw.publish)
--   gw.store["members:NAME"]       how many connections are in a room
-- A new version of this script therefore picks up existing connections
-- exactly where the old one left them.

local MAX_TEXT = 4000 -- longest chat line we relay, in bytes

local function topic(room) return "room:" .. room end

local function nick(conn)
  return conn:get("nick") or ("guest" .. conn.id)
end

-- Room names and nicks: 1..32 letters, digits, '_', '-' or '.'.
local function valid(s)
  return s ~= nil and #s <= 32 and s:match("^[%w_%.%-]+$") ~= nil
end

-- Add delta to a room's member count in gw.store; returns the new count.
-- A count that drops to 0 is deleted, so the store does not collect the
-- names of every room ever used.
local function add_members(room, delta)
  local key = "members:" .. room
  local n = (gw.store[key] or 0) + delta
  if n > 0 then gw.store[key] = n else gw.store[key] = nil; n = 0 end
  return n
end

local function notice(room, fmt, ...)
  gw.publish(topic(room), "* " .. fmt:format(...))
end

-- Take conn out of its room (if any) and tell the people still there.
local function leave(conn, verb)
  local room = conn:get("room")
  if not room then return end
  conn:unsubscribe(topic(room)) -- fails harmlessly once the conn is closed
  conn:set("room", nil)
  local n = add_members(room, -1)
  notice(room, "%s %s #%s (%d here)", nick(conn), verb, room, n)
end

local function join(conn, room)
  if not valid(room) then
    return conn:send("* room names are 1-32 characters: letters, digits, _ - .")
  end
  if conn:get("room") == room then
    return conn:send("* you are already in #" .. room)
  end
  leave(conn, "left")
  local ok, err = conn:subscribe(topic(room))
  if not ok then return gw.log.warn("subscribe failed: " .. tostring(err)) end
  conn:set("room", room)
  local n = add_members(room, 1)
  notice(room, "%s joined #%s (%d here)", nick(conn), room, n)
end

local function set_nick(conn, name)
  if not valid(name) then
    return conn:send("* nicks are 1-32 characters: letters, digits, _ - .")
  end
  local old = nick(conn)
  conn:set("nick", name)
  local room = conn:get("room")
  if room then
    notice(room, "%s is now known as %s", old, name)
  else
    conn:send("* you are now known as " .. name)
  end
end

-- Members are whoever has the room attribute; the core's client table is
-- the source of truth, so this needs no bookkeeping of its own.
local function who(conn)
  local room = conn:get("room")
  if not room then return conn:send("* you are not in a room; /join ROOM first") end
  local names = {}
  for _, c in ipairs(gw.clients()) do
    if c:get("room") == room then names[#names + 1] = nick(c) end
  end
  table.sort(names)
  conn:send(("* in #%s (%d): %s"):format(room, #names, table.concat(names, ", ")))
end

---------------------------------------------------------------- hooks

function on_connect(conn)
  gw.log.info("connect from " .. conn.remote)
  conn:send("* welcome, " .. nick(conn) .. ". Commands: /join ROOM, /nick NAME, /who")
end

function on_message(conn, data, kind)
  if kind == "binary" then -- not chat: echo it back unchanged
    return conn:send(data, "binary")
  end

  local cmd, arg = data:match("^/(%a+)%s*(.-)%s*$")
  if cmd == "join" then return join(conn, arg)
  elseif cmd == "nick" then return set_nick(conn, arg)
  elseif cmd == "who" then return who(conn)
  elseif cmd then return conn:send("* unknown command /" .. cmd)
  end

  local room = conn:get("room")
  if not room then
    return conn:send("received: " .. data)
  end
  if #data > MAX_TEXT then
    return conn:send("* message too long (max " .. MAX_TEXT .. " bytes)")
  end
  gw.publish(topic(room), nick(conn) .. ": " .. data)
end

-- Runs exactly once per connection, however it ended. The connection is
-- closing, but its id, name and attributes can still be read.
function on_disconnect(conn, code, reason)
  gw.log.info(("closed: %d %s"):format(code, reason or ""))
  leave(conn, "disconnected from")
end

-- Runs in the new state after a successful reload, before it takes over.
function on_reload()
  gw.log.info(("app.lua generation %d, %d clients kept"):format(gw.generation, gw.count()))
end
