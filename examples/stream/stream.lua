-- stream.lua — binary streaming with progress and a graceful close, for
-- examples/stream.
--
-- Protocol:
--   client -> binary messages    the stream, any size up to
--                                limits.max_message_size (128 KiB is typical)
--   server -> "progress N"       each time the total crosses a multiple of
--                                app.progress_every (4 MiB): N is that multiple
--   client -> close frame        end of stream; the server answers with
--   server -> "got N bytes"      the exact total, then the close reply
--   server -> "got N bytes" + close 4413 "quota reached"
--                                when the total reaches app.quota
--   text messages                answered with a line starting "error: "
--
-- The byte count is a connection attribute (conn:set), kept by the core, so
-- a reload (kill -HUP) in the middle of a stream loses nothing.

local app = gw.config.app or {}
local STEP = app.progress_every or 4 * 1024 * 1024   -- bytes
local QUOTA = app.quota or 0                         -- bytes; 0 = no quota
local QUOTA_CODE = 4413                              -- an application close code

local function got(conn)
  return ("got %d bytes"):format(conn:get("bytes") or 0)
end

function on_message(conn, data, kind)
  if kind ~= "binary" then
    return conn:send("error: send the stream as binary messages; close to finish")
  end
  local before = conn:get("bytes") or 0
  local total = before + #data
  conn:set("bytes", total)
  -- one line per boundary crossed (a message bigger than STEP may cross several)
  for mark = (math.floor(before / STEP) + 1) * STEP, total, STEP do
    conn:send("progress " .. mark)
  end
  if QUOTA > 0 and total >= QUOTA then
    -- Queued messages go out before the close frame; the client gets
    -- limits.close_timeout to answer it, then the socket is dropped.
    conn:send(got(conn))
    conn:close(QUOTA_CODE, "quota reached")
  end
end

function on_disconnect(conn, code, reason)
  gw.log.info(("stream closed: %d %s after %d bytes"):format(code, reason, conn:get("bytes") or 0))
  -- When the client closed, this last message goes out before the close
  -- reply.  After our own close (quota) the connection is already closing
  -- and the send just returns nil, "connection closed": "got" was sent then.
  conn:send(got(conn))
end
