-- work.lua — the Lua workload of bench_dropin.sh: table and string churn (Lua allocates everything
-- through one realloc-shaped function: realloc and free of the process's malloc).
-- `lua5.4 work.lua [SCALE]`; prints lines that depend only on SCALE, never on the allocator (nothing
-- printed depends on the order of pairs, which Lua's seeded string hash changes from run to run).
local scale = tonumber(arg[1]) or 1.0
math.randomseed(42)
local random, format, concat = math.random, string.format, table.concat

-- a live set of 20 000 records replaced at random: tables with string keys, arrays, strings
local live = {}
local total = 0
local rounds = math.floor(60000 * scale)
for i = 1, rounds do
  local k = random(20000)
  local old = live[k]
  if old then total = total + #old.items + #old.name end
  local n = random(1, 16)
  local items = {}
  for j = 1, n do items[j] = { id = j, label = "item" .. j, value = i * j } end
  live[k] = { name = format("rec-%d-%d", k, i % 97), items = items, note = string.rep("ab", n) }
  if i % 500 == 0 then -- string building: concat, gsub, sub
    local parts = {}
    for j = 1, 200 do
      local r = live[random(20000)]
      parts[#parts + 1] = r and r.name or "-"
    end
    local s = concat(parts, ",")
    local replaced, count = s:gsub("rec%-", "R")
    total = total + #replaced + count
  end
end
local alive = 0
for k = 1, 20000 do if live[k] then alive = alive + 1 end end
print("records", rounds, total, alive)

-- strings: building and dropping many short-lived strings, then a big buffer
local acc = {}
local sum = 0
for i = 1, math.floor(60000 * scale) do
  local s = format("%08x:%s", i * 2654435761 % 4294967296, ("z"):rep(i % 40))
  acc[(i % 5000) + 1] = s
  sum = sum + #s
end
local big = concat(acc, "\n")
print("strings", sum, #big)
