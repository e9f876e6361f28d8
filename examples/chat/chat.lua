-- chat.lua — echo + chat rooms + broadcast, for examples/chat.
--
-- Protocol (text messages, one line each):
--   /nick NAME   set your display name (default guestN)
--   /join ROOM   join ROOM, leaving the current room if any
--   /leave       leave the room: back to echo mode
--   /all TEXT    send "[all] NICK: TEXT" to every connected client
--   anything     in a room: "NICK: text" to everyone in the room (you too)
--                in no room: echoed back as "received: text"
-- Lines from the server that start with "* " are notices; the joiner gets
-- "* you joined #ROOM" (the page uses it to show that it is in the room).
--
-- Heartbeats need no code here: the core sends protocol pings, and answers
-- the text "Ping" with "Pong" itself (heartbeat.text_ping/text_pong in
-- moongate.yaml), so "Ping" never reaches on_message.
--
-- Reload-safe: the room and nick are connection attributes and the room is a
-- topic subscription, both kept by the core across `kill -HUP`.

local MAX_TEXT = 2000 -- longest line relayed to a room or to everyone, in bytes

local function nick(conn) return conn:get("nick") or ("guest" .. conn.id) end
local function topic(room) return "room:" .. room end

-- Room names and nicks: 1..32 letters, digits, '_', '-' or '.'.
local function valid(s) return #s <= 32 and s:match("^[%w_%.%-]+$") ~= nil end

local function leave(conn, verb)
  local room = conn:get("room")
  if not room then return false end
  conn:unsubscribe(topic(room)) -- fails harmlessly once the conn is closed
  conn:set("room", nil)
  gw.publish(topic(room), ("* %s %s #%s"):format(nick(conn), verb, room))
  return true
end

local commands = {}

function commands.nick(conn, name)
  if not valid(name) then return conn:send("* nicks are 1-32 letters, digits, _ - .") end
  local old = nick(conn)
  conn:set("nick", name)
  local room = conn:get("room")
  if room then gw.publish(topic(room), ("* %s is now %s"):format(old, name)) end
  conn:send("* you are now " .. name)
end

function commands.join(conn, room)
  if not valid(room) then return conn:send("* room names are 1-32 letters, digits, _ - .") end
  if conn:get("room") ~= room then
    leave(conn, "left")
    gw.publish(topic(room), ("* %s joined #%s"):format(nick(conn), room)) -- before we subscribe
    conn:subscribe(topic(room))
    conn:set("room", room)
  end
  conn:send("* you joined #" .. room)
end

function commands.leave(conn)
  local room = conn:get("room")
  if leave(conn, "left") then conn:send("* you left #" .. room) end
end

function commands.all(conn, text)
  if text == "" then return conn:send("* usage: /all TEXT") end
  if #text > MAX_TEXT then return conn:send("* message too long") end
  gw.broadcast(("[all] %s: %s"):format(nick(conn), text))
end

function on_connect(conn)
  conn:send("* welcome, " .. nick(conn) .. ". Commands: /join ROOM, /leave, /nick NAME, /all TEXT")
end

function on_message(conn, data, kind)
  if kind == "binary" then return conn:send(data, "binary") end -- not chat: echo as is

  local cmd, arg = data:match("^/(%a+)%s*(.-)%s*$")
  if cmd then
    local f = commands[cmd]
    if f then return f(conn, arg) end
    return conn:send("* unknown command /" .. cmd)
  end

  local room = conn:get("room")
  if not room then return conn:send("received: " .. data) end
  if #data > MAX_TEXT then return conn:send("* message too long") end
  gw.publish(topic(room), nick(conn) .. ": " .. data)
end

function on_disconnect(conn)
  leave(conn, "left") -- the core drops the subscription anyway; this tells the room
end
