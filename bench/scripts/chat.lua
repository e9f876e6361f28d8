-- chat.lua — the benchmark's chat room (bench/compress.sh, wsload --chat): every
-- message goes to every open connection, the sender included, encoded (and, where
-- permessage-deflate was negotiated without context takeover, compressed) once by
-- the core.
function on_message(conn, data, kind)
  gw.broadcast(data, nil, kind)
end
