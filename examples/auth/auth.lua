-- auth.lua — WebSocket upgrades only with a valid JSON Web Token, for
-- examples/auth.
--
-- The token comes in the Authorization header ("Bearer <token>"), or, for
-- browsers (which cannot set headers on a WebSocket), in the query as
-- access_token=<token>.  gw.jwt.verify checks its signature against the
-- key and the algorithms in moongate.yaml (app.jwt; never the algorithm the
-- token names alone), exp and nbf with the leeway, iss and aud.
--
--   no token                 -> HTTP 401 "missing token"
--   a token that fails       -> HTTP 401 "invalid token: <reason>"
--                               ("expired", "bad signature", "alg not allowed"...)
--   a valid token            -> 101; the connection gets the claims:
--                               conn:get("sub"), conn:get("claims") (JSON)
--
-- Messages once connected:  whoami -> the claims, as JSON.

local cfg = (gw.config.app or {}).jwt or {}
local OPTS = {
  key = cfg.key,                 -- HMAC secret or PEM public key
  algs = cfg.algs,               -- required: the algorithms accepted
  aud = cfg.aud,                 -- this gateway's name: the token's aud must hold it
  iss = cfg.iss,                 -- who issues the tokens
  leeway = cfg.leeway or 0,      -- seconds of clock skew forgiven on exp and nbf
  require_exp = true,            -- a token that never expires is refused
}

local function token_of(get_header, query)
  local h = get_header("Authorization")
  if h then return h:match("^[Bb]earer +(%S+) *$") or "" end
  return (query or ""):match("access_token=([^&]+)")
end

function on_handshake(req)
  local token = token_of(function(n) return req:header(n) end, req.query)
  if not token then return false, 401, "missing token\n" end
  local claims, why = gw.jwt.verify(token, OPTS)
  if not claims then
    gw.log.info(("refused %s: %s"):format(req.remote, why))
    return false, 401, "invalid token: " .. why .. "\n"
  end
end

-- The handshake checked the token; the connection reads it again (the
-- request's headers and query stay on it) to keep the claims.  A token
-- that expired in between gets the connection closed (4401).
function on_connect(conn)
  local token = token_of(function(n) return conn:header(n) end, conn.query)
  local claims, why = gw.jwt.verify(token or "", OPTS)
  if not claims then return conn:close(4401, why) end
  conn:set("sub", type(claims.sub) == "string" and claims.sub or "")
  conn:set("claims", gw.json.encode(claims))
  gw.log.info(("conn %d is %s"):format(conn.id, conn:get("sub")))
  conn:send("hello " .. conn:get("sub"))
end

function on_message(conn, data, kind)
  if data == "whoami" then return conn:send(conn:get("claims")) end
  conn:send("error: the only message is whoami")
end
