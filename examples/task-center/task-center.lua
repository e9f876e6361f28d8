-- task-center.lua — SPEC 2.2: tasks from a RabbitMQ queue to WebSocket workers.
--
-- Workers connect on /push and send their worker id as their first message.
-- Tasks arrive on the `tasks` queue as JSON {"TaskName":"...","TaskType":1};
-- app.types in moongate.yaml says which worker ids handle which task type.
-- Each task goes to an online worker of its type (the least loaded; ties in
-- round-robin order) as JSON {"id":<task id>, "TaskName":..., "TaskType":...,
-- "attempt":n, "redelivered":bool}; "redelivered" is true whenever a worker
-- may have had the task before (see seen_before); the broker message stays
-- unacked until the worker answers
--
--   done <id>            -> acked                         (reply "ok <id>")
--   done <id> <result>   -> result published to `results`, then acked
--   fail <id> [reason]   -> retried on another worker; after app.max_attempts
--                           attempts forwarded to `tasks.dead` with x-error
--
-- A worker that goes away with unconfirmed tasks has them retried the same
-- way (one attempt counted), except when it was replaced by a newer
-- connection with its id (4001) or the gateway is shutting down (1001): then
-- the core requeues them untouched.  A task for a type with no worker online
-- is parked here (up to app.park_max, kept below broker.prefetch) and sent as
-- soon as such a worker registers; beyond that it goes to `tasks.retry`, whose
-- TTL dead-letters it back to `tasks` later — never a hot requeue loop.
-- Malformed tasks (bad JSON, no/unknown TaskType) are rejected: the `tasks`
-- queue dead-letters them to `tasks.dead`.
--
-- Anyone may also send "submit <task JSON>" (published to `tasks` with
-- gw.broker.publish, buffered by the core while the broker is down) and
-- "status" (a JSON summary).  See README.md for the protocol and the
-- delivery guarantees.
--
-- The script's own state (parked tasks, the round-robin cursors) is a cache:
-- the core keeps every unsettled delivery and its owner, and on_reload
-- rebuilds the cache from gw.broker.unsettled().

local app = gw.config.app or {}
local Q = app.queues or {}
local TASKS   = Q.tasks   or "tasks"
local RETRY   = Q.retry   or "tasks.retry"
local DEAD    = Q.dead    or "tasks.dead"
local RESULTS = Q.results or "results"
local MAX_ATTEMPTS = tonumber(app.max_attempts) or 3
-- With several workers or nodes (`workers:`, `cluster:`) every one of them
-- consumes `tasks`, and a task may reach one whose WebSocket workers of its
-- type are all connected elsewhere: it goes back to `tasks` (RabbitMQ hands
-- it to the next consumer) up to app.max_hops times before it is parked.
local MAX_HOPS = tonumber(app.max_hops) or 16

-- Parked deliveries count against broker.prefetch (they are unacked): keep
-- app.park_max well below it (the shipped config: 50 of 100), so the other
-- types keep flowing.  If gw.config shows the broker section, cap at half.
local PREFETCH = tonumber((gw.config.broker or {}).prefetch)
local PARK_MAX = math.max(0, tonumber(app.park_max) or 50)
if PREFETCH then PARK_MAX = math.min(PARK_MAX, math.floor(PREFETCH / 2)) end

-- Ids: 1..64 letters, digits, '_', '-', '.' or ':'.
local function valid_id(s) return #s <= 64 and s:match("^[%w_%.:%-]+$") ~= nil end

-- app.types: { "1": [worker-1, worker-2], "2": [worker-3] }  (type -> ids)
local WORKERS, TYPES_OF = {}, {}
for t, ids in pairs(app.types or {}) do
  t = tostring(t)
  WORKERS[t] = {}
  for _, id in ipairs(type(ids) == "table" and ids or { ids }) do
    id = tostring(id)
    table.insert(WORKERS[t], id)
    TYPES_OF[id] = TYPES_OF[id] or {}
    table.insert(TYPES_OF[id], t)
  end
end

local parked = {}     -- type -> array of { msg = handle, task = decoded table }
local nparked = 0
local cursor = {}     -- type -> index in WORKERS[type] where the next tie-break starts

-- Forwards waiting for the broker's confirm.  If the copy is refused or
-- unroutable, the core leaves the original unsettled (and logs it); we look
-- every second and put such a task back in its queue, so it is never stuck
-- (e.g. owned by a worker that has gone meanwhile).
local forwarding = {}   -- id -> msg

-- A worker may have had this delivery before: RabbitMQ says so
-- (msg.redelivered: it was requeued, e.g. after a 4001 replacement, a
-- shutdown or a broker outage), or an attempt was counted (the previous
-- worker failed it, disconnected, was killed or timed out), or an earlier
-- forward of ours marked the copy (x-redelivered).  A forwarded copy is a new
-- message to RabbitMQ, with redelivered false: the header carries the flag.
local function seen_before(msg)
  return msg.redelivered or (tonumber(msg.headers["x-attempts"]) or 0) > 0
         or msg.headers["x-redelivered"] == true
end

local function forward(msg, queue, headers)
  if seen_before(msg) then
    headers = headers or {}
    headers["x-redelivered"] = true
  end
  local ok, err = msg:forward("", queue, headers)
  if ok then forwarding[msg.id] = msg end
  return ok, err
end

gw.every(1000, function()
  for id, msg in pairs(forwarding) do
    if msg.state ~= "forwarding" then
      forwarding[id] = nil
      if msg.state == "unsettled" then
        gw.log.warn(("task %d: the broker did not take its forwarded copy; requeued"):format(id))
        msg:requeue()
      end
    end
  end
end)

local function attempts(msg)
  return tonumber(msg.headers["x-attempts"]) or 0
end

-- The task of a delivery -> task, type | nil, why.
local function parse(msg)
  local ok, task = pcall(gw.json.decode, msg.body)
  if not ok or type(task) ~= "table" then return nil, "malformed JSON" end
  if type(task.TaskName) ~= "string" then return nil, "no TaskName" end
  local tt = task.TaskType
  if type(tt) ~= "number" and type(tt) ~= "string" then return nil, "no TaskType" end
  tt = tostring(tt)
  if not WORKERS[tt] then return nil, "unknown TaskType " .. tt end
  return task, tt
end

-- Tasks a worker holds: its deliveries still waiting for a decision.
local function load_of(conn)
  local n = 0
  for _, m in ipairs(gw.broker.unsettled(conn)) do
    if m.state == "unsettled" then n = n + 1 end
  end
  return n
end

-- The online worker for type tt with the fewest unconfirmed tasks; ties go
-- round-robin from the cursor.  `avoid` (the worker that just failed the
-- task) is only chosen when it is the only one online.
local function pick(tt, avoid)
  local ids = WORKERS[tt]
  local n = #ids
  if n == 0 then return nil end
  local start = cursor[tt] or 1
  local best, best_load, best_i
  for k = 0, n - 1 do
    local i = (start - 1 + k) % n + 1
    local c = gw.find(ids[i])
    if c and c:get("worker") == ids[i] then
      local l = load_of(c)
      if ids[i] == avoid then l = l + 1e9 end
      if not best or l < best_load then best, best_load, best_i = c, l, i end
    end
  end
  if best then cursor[tt] = best_i % n + 1 end
  return best
end

local retry -- forward declaration

local function park(msg, task, tt)
  if nparked >= PARK_MAX then
    -- Full: to the retry queue; its TTL dead-letters it back to `tasks`.
    local ok, err = forward(msg, RETRY)
    if ok then
      gw.log.info(("task %d (%s, type %s): no worker online, park full; to %s")
                  :format(msg.id, task.TaskName, tt, RETRY))
    else
      gw.log.warn(("task %d: forward to %s failed: %s"):format(msg.id, RETRY, err))
      if msg.state == "unsettled" then msg:requeue() end
    end
    return
  end
  parked[tt] = parked[tt] or {}
  table.insert(parked[tt], { msg = msg, task = task })
  nparked = nparked + 1
  gw.log.info(("task %d (%s, type %s): no worker online, parked (%d parked)")
              :format(msg.id, task.TaskName, tt, nparked))
end

-- A worker of type tt is online on another worker process or node.
local function elsewhere(tt)
  for _, id in ipairs(WORKERS[tt]) do
    if not gw.find(id) and gw.online(id) then return id end
  end
end

-- Back to `tasks` for another consumer; x-hops counts the trips.
local function pass_on(msg, task, tt, to)
  local hops = (tonumber(msg.headers["x-hops"]) or 0) + 1
  local ok, err = forward(msg, TASKS, { ["x-hops"] = hops })
  if ok then
    gw.log.info(("task %d (%s, type %s): %s is online elsewhere; back to %s (hop %d)")
                :format(msg.id, task.TaskName, tt, to, TASKS, hops))
  else
    gw.log.warn(("task %d: forward to %s failed: %s"):format(msg.id, TASKS, err))
    if msg.state == "unsettled" then msg:requeue() end
  end
end

local function dispatch(msg, task, tt)
  local w = pick(tt, msg.headers["x-last-worker"])
  if not w then
    local other = elsewhere(tt)
    if other and (tonumber(msg.headers["x-hops"]) or 0) < MAX_HOPS then
      return pass_on(msg, task, tt, other)
    end
    return park(msg, task, tt)
  end
  local out = {}
  for k, v in pairs(task) do out[k] = v end
  out.id = msg.id
  -- The task's own identity, the same in every delivery of it (id is this
  -- delivery's number, new each time): what a worker keys idempotency on.
  out.message_id = msg.message_id
  out.attempt = attempts(msg) + 1
  out.redelivered = seen_before(msg) and true or false
  msg:assign(w)
  local ok, err = w:send(gw.json.encode(out))
  if not ok then                       -- closing under us: try again elsewhere
    msg:assign(nil)
    gw.log.warn(("task %d: send to %s failed: %s"):format(msg.id, w:get("worker"), err))
    return retry(msg, ("send to %s failed: %s"):format(w:get("worker"), err), w:get("worker"))
  end
  gw.log.info(("task %d (%s, type %s, attempt %d) -> %s")
              :format(msg.id, task.TaskName, tt, out.attempt, w:get("worker")))
end

-- One more attempt used up: back to `tasks` (to another worker), or to the
-- dead-letter queue when it was the last one.
retry = function(msg, why, worker)
  local n = attempts(msg) + 1
  local ok, err
  if n >= MAX_ATTEMPTS then
    ok, err = forward(msg, DEAD, { ["x-attempts"] = n, ["x-error"] = why,
                                      ["x-last-worker"] = worker })
    gw.log.warn(("task %d dead after %d attempts: %s"):format(msg.id, n, why))
  else
    ok, err = forward(msg, TASKS, { ["x-attempts"] = n, ["x-last-worker"] = worker })
    gw.log.info(("task %d retried (attempt %d failed: %s)"):format(msg.id, n, why))
  end
  if not ok then
    gw.log.warn(("task %d: forward failed: %s"):format(msg.id, err))
    -- lost with the broker connection: RabbitMQ has it back already;
    -- otherwise (e.g. publish buffer full) give it back ourselves
    if msg.state == "unsettled" then msg:requeue() end
  end
end

-- Parked tasks whose type now has a worker online elsewhere go back to
-- `tasks` (checked every second: a registration on another node is not an
-- event here).
gw.every(1000, function()
  for tt, list in pairs(parked) do
    local other = elsewhere(tt)
    if other then
      parked[tt] = nil
      for _, p in ipairs(list) do
        nparked = nparked - 1
        if p.msg.state == "unsettled" then pass_on(p.msg, p.task, tt, other) end
      end
    end
  end
end)

-- Everything parked for the types of a worker that just registered.
local function unpark(types)
  for _, tt in ipairs(types) do
    local list = parked[tt]
    parked[tt] = nil
    for _, p in ipairs(list or {}) do
      nparked = nparked - 1
      if p.msg.state == "unsettled" then dispatch(p.msg, p.task, tt) end
    end
  end
end

local function register(conn, id)
  if not valid_id(id) then
    return conn:close(4009, "a worker id is 1-64 letters, digits, _ - . :")
  end
  local ok, err = conn:set_name(id)        -- replaces an older conn with this id (4001)
  if not ok then return conn:close(4009, err) end
  conn:set("worker", id)
  local types = TYPES_OF[id] or {}
  if #types == 0 then
    -- Registered all the same (app.types may gain it on a reload), but
    -- nothing will reach it: say so where the operator looks.
    gw.log.warn(("worker %s online as conn %d matches no task type in app.types: "
                 .. "it will get no tasks"):format(id, conn.id))
  else
    gw.log.info(("worker %s online as conn %d (types %s)")
                :format(id, conn.id, table.concat(types, ",")))
  end
  conn:send("registered " .. id)
  unpark(types)
end

local function owned(conn, id)
  local msg = gw.broker.message(tonumber(id) or -1)
  if msg and msg.owner == conn and msg.state == "unsettled" then return msg end
end

local function done(conn, id, result)
  local msg = owned(conn, id)
  if not msg then
    -- settled already, or lost in a broker outage (then it comes back)
    return conn:send("stale " .. id)
  end
  if result then
    local task = parse(msg) or {}
    local ok, err = gw.broker.publish("", RESULTS, gw.json.encode({
      id = msg.id, TaskName = task.TaskName, TaskType = task.TaskType,
      worker = conn:get("worker"), result = result,
    }), {}, { correlation_id = msg.message_id, content_type = "application/json" })
    if not ok then
      gw.log.warn(("task %d: result not published: %s"):format(msg.id, err))
      return conn:send(("error %s %s"):format(id, err))   -- still assigned: may say done again
    end
  end
  local ok, err = msg:ack()
  if not ok then return conn:send(("stale %s %s"):format(id, err)) end
  gw.log.info(("task %d done by %s"):format(msg.id, conn:get("worker")))
  conn:send("ok " .. id)
end

local function fail(conn, id, why)
  local msg = owned(conn, id)
  if not msg then return conn:send("stale " .. id) end
  local worker = conn:get("worker")
  retry(msg, ("failed on %s: %s"):format(worker, why or "no reason"), worker)
  conn:send("ok " .. id)
end

local function submit(conn, body)
  local ok, t = pcall(gw.json.decode, body)
  if not ok or type(t) ~= "table" then return conn:send("error: malformed JSON") end
  local sent, err = gw.broker.publish("", TASKS, body, {}, { content_type = "application/json" })
  if not sent then return conn:send("error: " .. err) end
  conn:send("queued")
end

local function status(conn)
  local per = {}
  for tt, list in pairs(parked) do per[tt] = #list end
  conn:send(gw.json.encode({
    broker = gw.broker.state(), parked = nparked, parked_by_type = per,
    unsettled = #gw.broker.unsettled(), generation = gw.generation,
  }))
end

-- ------------------------------------------------------------------ hooks

function on_task(msg)
  local task, tt = parse(msg)
  if not task then
    gw.log.warn(("task %d rejected: %s; dead-lettered (body %q)")
                :format(msg.id, tt, msg.body:sub(1, 80)))
    return msg:reject()
  end
  dispatch(msg, task, tt)
end

function on_message(conn, data, kind)
  if kind ~= "text" then return conn:send("error: text messages only") end
  local body = data:match("^submit (.+)$")
  if body then return submit(conn, body) end
  if data == "status" then return status(conn) end
  if not conn:get("worker") then return register(conn, data) end
  local verb, id = data:match("^(%a+) (%d+)$")
  local rest
  if not verb then verb, id, rest = data:match("^(%a+) (%d+) (.+)$") end
  if verb == "done" then return done(conn, id, rest) end
  if verb == "fail" then return fail(conn, id, rest) end
  conn:send("error: expected done <id> [result] or fail <id> [reason]")
end

function on_disconnect(conn, code, reason)
  local id = conn:get("worker")
  if not id then return end
  local held = {}
  for _, m in ipairs(gw.broker.unsettled(conn)) do
    if m.state == "unsettled" then table.insert(held, m) end
  end
  gw.log.info(("worker %s gone: %d %s (%d unconfirmed)"):format(id, code, reason, #held))
  if code == 4001 or code == 1001 then
    return  -- replaced by a new connection / shutting down: the core requeues them as they are
  end
  for _, m in ipairs(held) do
    retry(m, ("worker %s disconnected (%d %s)"):format(id, code, reason), id)
  end
end

function on_broker(state, detail)
  if state == "down" then
    -- RabbitMQ requeues every unacked delivery; our handles are dead now.
    parked, nparked = {}, 0
    gw.log.warn("broker down: " .. tostring(detail))
  else
    gw.log.info("broker up: consuming " .. TASKS)
  end
end

-- A reload starts a fresh Lua state: rebuild the parking lot from what the
-- core kept.  Assigned tasks keep their owner (msg.owner) and need nothing;
-- unassigned ones were parked by the old script and must be taken again, or
-- the core requeues them once on_reload returns.
function on_reload()
  local assigned, again = 0, 0
  for _, msg in ipairs(gw.broker.unsettled()) do
    if msg.state == "forwarding" then
      forwarding[msg.id] = msg           -- watched again by this generation's timer
    elseif msg.state == "unsettled" then
      if msg.owner then
        assigned = assigned + 1
      else
        local task, tt = parse(msg)
        if task then
          again = again + 1
          dispatch(msg, task, tt)
        else
          msg:reject()
        end
      end
    end
  end
  gw.log.info(("reload: generation %d, %d assigned tasks kept, %d parked tasks taken over")
              :format(gw.generation, assigned, again))
end
