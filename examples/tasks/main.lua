-- A small task board: the sample app for luabroker's Lua API.
--
--   luabroker --lua-dir examples/tasks --hotload
--
-- The board (type Board) holds columns (type Column), each holding tasks (type Task); all
-- three are `session:prototype` classes from tasks/model.lua, so editing that file while the
-- server runs with --hotload updates every live session in place. A one-second interval keeps
-- `clock` current. viewdefs/*.html are the templates the page renders these types with (the
-- board, its columns as a `ui-viewlist`, each task as a row in the `list-item` namespace);
-- `?tree` in the address shows the raw object tree instead.

local model = require("tasks.model")
require("tasks.wrappers")

-- main.lua runs again on a hot reload of itself: the board and its timer exist already.
if session.reloading then
    return
end

local board = model.Board:new({ title = "Team board" })
board:addColumn("To do")
board:addColumn("Doing")
board:addColumn("Done")
board:addTask("Write the README")
board:addTask("Try --hotload")
board:addTask("Connect a frontend", 2)
board:tick()

session:createAppVariable(board)

-- The clock: each callback is a turn of its own, followed by change detection, so every
-- watching tab sees the new time without asking.
session:setInterval(function() board:tick() end, 1000)

ui.log("task board ready for session " .. tostring(session._sessionID))
