-- main.lua: the default app that ships with luabroker (what `cargo run` serves). A counter and
-- a todo list on one object, variable 1. Plain tables with metatables: the page lists the
-- object's fields (editable) and its methods (buttons) and keeps them live.

local todo = require("todo")

local App = { type = "App" }
App.__index = App

-- The counter.
function App:increment() self.count = self.count + 1 end
function App:decrement() self.count = self.count - 1 end
function App:reset() self.count = 0 end

-- The todo list. `todos` is replaced, not edited in place, when done items are cleared, so the
-- page sees a new array and re-binds its elements.
function App:add()
  local text = todo.clean(self.newTodo)
  if not text then return end
  self.todos[#self.todos + 1] = todo.Todo.new(text)
  self.newTodo = ""
end

function App:clearDone()
  self.todos = todo.pending(self.todos)
end

--- How many todos are not done yet (computed on every change-detection pass).
function App:remaining()
  return #todo.pending(self.todos)
end

local app = setmetatable({
  count = 0,
  newTodo = "",
  todos = {
    todo.Todo.new("Click increment"),
    todo.Todo.new("Add a todo of your own"),
  },
}, App)

-- `computed` tells the built-in page to show remaining() as a live value, not as a button.
session:createAppVariable(app, { computed = "remaining" })
