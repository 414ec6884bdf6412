-- wrk script: POST visitor turns to 10,000 conversations, round-robin. Each wrk thread has its
-- own conversations, so that, as with real visitors, a conversation gets one turn at a time.
-- Usage (see BENCHMARKS.md): KEY=... wrk -t2 -c64 -d20s -s bench/turns.lua http://127.0.0.1:8080
local key = os.getenv("KEY")
local texts = {
  "Hi, do you integrate with HubSpot?",
  "How much does the team plan cost for 25 people?",
  "ok thanks",
  "Can you send me the docs for the API?",
}
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local n = 0
request = function()
  n = n + 1
  local id = "load-" .. tostring(tid) .. "-" .. (n % 5000)
  local body = '{"role": "user", "text": "' .. texts[(n % #texts) + 1] .. '"}'
  return wrk.format("POST", "/v1/conversations/" .. id .. "/turns",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key }, body)
end
