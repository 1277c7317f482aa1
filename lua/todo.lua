-- todo.lua: the todo list of the default app. A `Todo` is a plain table with a metatable
-- (its `type` lives on the class, so the page shows it as a badge, not as a field).

local Todo = { type = "Todo" }
Todo.__index = Todo

--- A new, not yet done todo.
function Todo.new(text)
  return setmetatable({ text = text, done = false }, Todo)
end

local M = { Todo = Todo }

--- Trims surrounding whitespace; nil when nothing is left (a blank todo is not added).
function M.clean(text)
  if type(text) ~= "string" then return nil end
  local trimmed = text:match("^%s*(.-)%s*$")
  if trimmed == "" then return nil end
  return trimmed
end

--- The todos of `list` that are not done, in order (a new table: the list itself is the app's).
function M.pending(list)
  local kept = {}
  for _, todo in ipairs(list) do
    if not todo.done then kept[#kept + 1] = todo end
  end
  return kept
end

return M
