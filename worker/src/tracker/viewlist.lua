-- The built-in `lua.ViewList` and `lua.ViewListItem` (ui-engine's list wrapper), loaded into a
-- session's VM the first time a variable asks for `wrapper=lua.ViewList`.
--
-- A ViewList wraps an array (the variable's value: a field holding a sequence, or a method's
-- result). It keeps one ViewListItem per element in `items`, by position: growing the array adds
-- items at the end, shrinking it destroys the items past the new length, and every other item
-- keeps its identity and gets its new `baseItem` and `index`. An item's `item` is its base item,
-- or, with the variable's `itemWrapper=Type` (ui-engine's older spelling `item=Type` too), the
-- presenter `Type:new(viewListItem)` built for that base item; a presenter whose position gets
-- a different base item is destroyed and built again for the new one.
--
-- Arguments: `log(level, message)` and `resolve(name)` (the class registry `create=`/`wrapper=`
-- use), both from the tracker. Returns the two classes.

local log, resolve = ...
local type, rawlen, rawequal, pcall, setmetatable, tostring =
    type, rawlen, rawequal, pcall, setmetatable, tostring
local table_remove = table.remove

-- Marks `items` as an array even while it is empty (value JSON sends `[]`, not an object).
local ARRAY = { __array = true }

local ViewList = { type = "lua.ViewList" }
ViewList.__index = ViewList

local ViewListItem = { type = "lua.ViewListItem" }
ViewListItem.__index = ViewListItem

local function call_destroy(obj, what)
    if type(obj) ~= "table" then return end
    local destroy = obj.destroy
    if type(destroy) == "function" then
        local ok, err = pcall(destroy, obj)
        if not ok then log("warn", what .. " destroy() failed: " .. tostring(err)) end
    end
end

-- Gives `it` its presenter (or its base item when the list has no item wrapper or it fails).
local function wrap(list, it)
    it.item = it.baseItem
    it._presenter = nil
    local name = list.itemWrapper
    if name == nil or name == "" then return end
    local class = resolve(name)
    if class == nil then
        log("warn", "lua.ViewList: itemWrapper=" .. name .. ": no prototype or global table named " .. name)
        return
    end
    local new = class.new
    if type(new) ~= "function" then
        log("warn", "lua.ViewList: itemWrapper=" .. name .. ": " .. name .. " has no new method")
        return
    end
    local ok, presenter = pcall(new, class, it)
    if not ok then
        log("warn", "lua.ViewList: " .. name .. ":new failed: " .. tostring(presenter))
    elseif presenter ~= nil then
        it.item = presenter
        it._presenter = true
    end
end

local function unwrap(it)
    if it._presenter then
        local presenter = it.item
        it._presenter = nil
        it.item = it.baseItem
        call_destroy(presenter, "presenter")
    end
end

--- `lua.ViewList:new(variable)`: the wrapper for a variable; `variable` is the tracker's handle.
function ViewList:new(variable)
    local list = setmetatable({ items = setmetatable({}, ARRAY), selectionIndex = -1 }, self)
    if type(variable) == "userdata" then
        list.itemWrapper = variable:getProperty("itemWrapper") or variable:getProperty("item")
        -- High priority: the frontend needs it before it renders the list's items.
        variable:setProperty("fallbackNamespace:high", "list-item")
        list.value = variable:getValue()
    elseif type(variable) == "table" then
        list.value = variable
    end
    list:sync()
    return list
end

--- Brings `items` in line with `self.value` (the tracker sets it before calling this).
function ViewList:sync()
    local source = self.value
    local n = 0
    if type(source) == "table" then
        n = rawlen(source)
    elseif source ~= nil then
        log("warn", "lua.ViewList: expected an array, got a " .. type(source))
    end
    local items = self.items
    for i = rawlen(items), n + 1, -1 do
        local it = items[i]
        items[i] = nil
        unwrap(it)
        it.index = -1
    end
    for i = 1, n do
        local base = source[i]
        local it = items[i]
        if it == nil then
            it = setmetatable({ list = self, index = i - 1, baseItem = base }, ViewListItem)
            items[i] = it
            wrap(self, it)
        else
            it.index = i - 1
            if not rawequal(it.baseItem, base) then
                unwrap(it)
                it.baseItem = base
                wrap(self, it)
            end
        end
    end
    local sel = self.selectionIndex
    if type(sel) ~= "number" or sel >= n then
        self.selectionIndex = -1
    end
end

--- Runs when the variable goes: every presenter is destroyed.
function ViewList:destroy()
    local items = self.items
    for i = rawlen(items), 1, -1 do
        unwrap(items[i])
        items[i] = nil
    end
end

function ViewList:size() return rawlen(self.items) end

--- The item at a 0-based index, or nil.
function ViewList:at(index) return self.items[index + 1] end

--- Selects the 0-based index (-1, or anything out of range: no selection).
function ViewList:select(index)
    if type(index) ~= "number" or index < 0 or index >= rawlen(self.items) then index = -1 end
    self.selectionIndex = index
end

--- The selected ViewListItem, or nil.
function ViewList:selectedItem()
    local sel = self.selectionIndex
    if type(sel) ~= "number" or sel < 0 then return nil end
    return self.items[sel + 1]
end

--- Removes the element at a 0-based index from the source array (a table the app holds:
--- removing from a method's fresh result changes nothing the next pass would see).
function ViewList:removeAt(index)
    local source = self.value
    if type(source) ~= "table" or type(index) ~= "number" or index < 0 or index >= rawlen(source) then
        return false
    end
    table_remove(source, index + 1)
    return true
end

function ViewListItem:remove()
    if self.list == nil or self.index < 0 then return false end
    return self.list:removeAt(self.index)
end

function ViewListItem:select()
    if self.list ~= nil then self.list:select(self.index) end
end

function ViewListItem:isSelected()
    return self.list ~= nil and self.index >= 0 and self.list.selectionIndex == self.index
end

-- ui-engine: a ViewListItem cannot be created from the browser.
function ViewListItem:new()
    return nil
end

return { ViewList = ViewList, ViewListItem = ViewListItem }
