-- A wrapper: bind a column's tasks with `tasks?wrapper=OpenTasks` and the variable's children
-- see an OpenTasks object instead of the raw array: `items()` lists the unfinished tasks,
-- `count()` says how many there are.
--
-- The server calls OpenTasks:new(variable) once for the variable, then, whenever the underlying
-- array changes (a task added or removed; a task's own fields changing does not change the
-- array), sets `wrapper.value` to it and calls `wrapper:sync()`: the wrapper keeps its state
-- (here, `refreshes`). The filtering happens in the methods, which change detection calls on
-- every pass, so finishing a task shows at once.

OpenTasks = session:prototype("OpenTasks", { refreshes = 0 })

function OpenTasks:new(variable)
    local wrapper = session:create(self, { variable = variable })
    wrapper.refreshes = 1
    return wrapper
end

function OpenTasks:sync()
    self.refreshes = self.refreshes + 1
end

function OpenTasks:items()
    local open = {}
    for _, task in ipairs(self.variable:getValue() or {}) do
        if not task.done then
            table.insert(open, task)
        end
    end
    return open
end

function OpenTasks:count() return #self:items() end

return OpenTasks
