-- cluster.lua — bench/cluster.sh's script: a connection whose query has
-- "sub" subscribes to "bench"; a message starting with "!" (what wsload
-- --broadcast publishes) is published to "bench", which the cluster carries
-- to the subscribers on every node; anything else is echoed.
local BANG = 33 -- "!"

function on_connect(conn)
  if conn.query:find("sub", 1, true) then conn:subscribe("bench") end
end

function on_message(conn, data, kind)
  if data:byte(1) == BANG then
    gw.publish("bench", data, kind)
  else
    conn:send(data, kind)
  end
end
