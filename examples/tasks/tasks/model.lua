-- The task board's classes. Declared with session:prototype, so a hot reload of this file
-- changes the classes in place and live boards keep their identity (and their object ids).

local M = {}

-- One task. `notes` is declared but starts nil (EMPTY).
M.Task = session:prototype("Task", { title = "", done = false, notes = EMPTY })
local Task = M.Task

function Task:toggle() self.done = not self.done end

-- `label()` is a computed value: bind it with `label()` and access `r`.
function Task:label()
    return (self.done and "[x] " or "[ ] ") .. self.title
end

-- A column: a name and an array of tasks.
M.Column = session:prototype("Column", { name = "" })
local Column = M.Column

function Column:new(inst)
    local column = session:create(self, inst)
    column.tasks = column.tasks or {}
    return column
end

function Column:add(task) table.insert(self.tasks, task) end

function Column:count() return #self.tasks end

-- Removes the finished tasks and returns them, in order.
function Column:takeDone()
    local kept, taken = {}, {}
    for _, task in ipairs(self.tasks) do
        table.insert(task.done and taken or kept, task)
    end
    self.tasks = kept
    return taken
end

-- The board: the app object (variable 1).
M.Board = session:prototype("Board", { title = "", clock = "", ticks = 0, newTask = "" })
local Board = M.Board

function Board:new(inst)
    local board = session:create(self, inst)
    board.columns = board.columns or {}
    return board
end

function Board:addColumn(name)
    local column = Column:new({ name = name })
    table.insert(self.columns, column)
    return column
end

-- Adds a task to column `index` (1-based; the first by default).
function Board:addTask(title, index)
    local column = self.columns[index or 1]
    local task = Task:new({ title = title })
    column:add(task)
    return task
end

-- The action behind the "add" button: the text typed into `newTask` becomes a task.
function Board:add()
    if self.newTask ~= "" then
        self:addTask(self.newTask)
        self.newTask = ""
    end
end

-- Moves every finished task one column to the right (the last column keeps its own).
function Board:advance()
    for i = #self.columns - 1, 1, -1 do
        for _, task in ipairs(self.columns[i]:takeDone()) do
            task.done = false
            self.columns[i + 1]:add(task)
        end
    end
end

function Board:summary()
    local total, done = 0, 0
    for _, column in ipairs(self.columns) do
        total = total + column:count()
    end
    done = self.columns[#self.columns]:count()
    return string.format("%d tasks, %d done", total, done)
end

function Board:tick()
    self.ticks = self.ticks + 1
    self.clock = os.date("%H:%M:%S")
end

return M
