-- echo.lua — the Autobahn|Testsuite echo server (tools/autobahn.sh).
--
-- Every message goes back unchanged and with its own kind: text as text,
-- binary as binary.  The fuzzingclient compares the echo byte for byte, so
-- nothing is added to it.
function on_message(conn, data, kind)
  conn:send(data, kind)
end
