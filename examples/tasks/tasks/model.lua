-- The task board's classes. Declared with session:prototype, so a hot reload of this file
-- changes the classes in place and live boards keep their identity (and their object ids).

local M = {}

-- One task. `notes` is declared but starts nil (EMPTY). `editing` is the row's edit mode.
M.Task = session:prototype("Task", { title = "", done = false, notes = EMPTY, editing = false })
local Task = M.Task

function Task:toggle() self.done = not self.done end

-- The row's edit and save buttons: the title input shows while editing.
function Task:edit() self.editing = true end
function Task:save() self.editing = false end
function Task:viewing() return not self.editing end

-- The row's arrows: move the task to the column on its left or right.
function Task:moveLeft() session:getApp():move(self, -1) end
function Task:moveRight() session:getApp():move(self, 1) end
function Task:isFirst() return session:getApp():columnOf(self) == 1 end
function Task:isLast()
    local board = session:getApp()
    return board:columnOf(self) == #board.columns
end

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

function Column:isEmpty() return #self.tasks == 0 end

-- Takes `task` out of this column; true if it was here.
function Column:remove(task)
    for i, t in ipairs(self.tasks) do
        if rawequal(t, task) then
            table.remove(self.tasks, i)
            return true
        end
    end
    return false
end

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

-- What the "Add" button would do with what is typed so far (follows each keystroke).
function Board:preview()
    if self.newTask == "" then return "" end
    return "Add “" .. self.newTask .. "” to " .. self.columns[1].name
end

function Board:cannotAdd() return self.newTask == "" end

-- The index of the column holding `task` (nil if none does).
function Board:columnOf(task)
    for i, column in ipairs(self.columns) do
        for _, t in ipairs(column.tasks) do
            if rawequal(t, task) then return i end
        end
    end
end

-- Moves `task` `by` columns (-1: left, 1: right), to the end of that column.
function Board:move(task, by)
    local from = self:columnOf(task)
    local to = from and self.columns[from + by]
    if to and self.columns[from]:remove(task) then
        to:add(task)
    end
end

-- How far along the board is, as a CSS width for the progress bar.
function Board:progress()
    local total = 0
    for _, column in ipairs(self.columns) do total = total + column:count() end
    if total == 0 then return "0%" end
    return string.format("%d%%", math.floor(100 * self.columns[#self.columns]:count() / total + 0.5))
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
