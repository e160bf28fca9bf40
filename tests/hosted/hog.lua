-- hog.lua: a live set that grows without end, until the budget refuses (hostmem host lua tests)
local t = {}
for i = 1, math.maxinteger do t[i] = {i, tostring(i) .. 'xxxxxxxxxxxx'} end
