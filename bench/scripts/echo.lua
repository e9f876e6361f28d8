-- echo.lua — the benchmark's echo: every message goes back unchanged, same kind.
function on_message(conn, data, kind)
  conn:send(data, kind)
end
