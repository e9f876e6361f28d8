-- heartbeat.lua — a heartbeat service, for examples/heartbeat.
--
-- Protocol (text messages):
--   client -> heartbeat<id>   "I am <id> and I am alive", e.g. heartbeatsensor-7.
--                             The first one (or a new id) registers the
--                             connection under <id> and is answered with
--                             "registered <id>"; later ones are not answered.
--   client -> who <id>        "is <id> online?"  Answer:
--                             "who <id>: online, conn N, last heartbeat M ms ago"
--                             or "who <id>: offline".
--   server -> heartbeat       the gateway's own heartbeat, to every client,
--                             every app.heartbeat_every_ms.
--   anything else             answered with a line starting "error: ".
--
-- What the core does for us (moongate.yaml):
--   * heartbeat.timeout: a client from which nothing arrived for that long is
--     closed with 4000 "heartbeat timeout"; its name is released.
--   * names.duplicate: replace: a second connection with the same id takes
--     the id; the older one is closed with 4001
--     "a new client with the same id connected".
--   * a plain HTTP GET on the WebSocket path gets 400.
--
-- The id and the last-heartbeat time are connection attributes (conn:set),
-- kept by the core, so a reload (kill -HUP) loses nothing.

local EVERY = (gw.config.app or {}).heartbeat_every_ms or 5000

-- Ids: 1..64 letters, digits, '_', '-', '.' or ':'.
local function valid_id(s) return #s <= 64 and s:match("^[%w_%.:%-]+$") ~= nil end

-- The gateway's own heartbeat.  Created in the main chunk, so each script
-- generation has exactly one (a reload cancels the old generation's timers).
gw.every(EVERY, function() gw.broadcast("heartbeat") end)

local function heartbeat(conn, id)
  if not valid_id(id) then
    return conn:send("error: a client id is 1-64 letters, digits, _ - . :")
  end
  conn:set("last_heartbeat", gw.now())
  if conn.name == id then return end          -- already registered: just alive
  local ok, err = conn:set_name(id)           -- may close an older conn (4001)
  if not ok then return conn:send("error: " .. err) end
  conn:set("client_id", id)                   -- kept for on_disconnect's log line
  gw.log.info(("registered %s as conn %d"):format(id, conn.id))
  conn:send("registered " .. id)
end

local function who(conn, id)
  local c = gw.find(id)
  if not c then return conn:send(("who %s: offline"):format(id)) end
  local ago = gw.now() - (c:get("last_heartbeat") or 0)
  conn:send(("who %s: online, conn %d, last heartbeat %d ms ago"):format(id, c.id, ago))
end

function on_message(conn, data, kind)
  if kind == "text" then
    local id = data:match("^heartbeat(.*)$")
    if id then return heartbeat(conn, id) end
    id = data:match("^who (.+)$")
    if id then return who(conn, id) end
  end
  conn:send("error: expected heartbeat<client-id> or who <client-id>")
end

function on_disconnect(conn, code, reason)
  gw.log.info(("%s gone: %d %s"):format(conn:get("client_id") or "unregistered client",
                                        code, reason))
end
