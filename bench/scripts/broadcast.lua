-- broadcast.lua — the benchmark's broadcast: a message starting with "!" (what
-- wsload --broadcast publishes) goes to every other open connection, once
-- encoded by the core; anything else is echoed.
local BANG = 33 -- "!"

function on_message(conn, data, kind)
  if data:byte(1) == BANG then
    gw.broadcast(data, conn, kind)
  else
    conn:send(data, kind)
  end
end
