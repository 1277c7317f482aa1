-- The default app: a counter.
local App = {}
App.__index = App

function App:increment() self.count = self.count + 1 end

local app = setmetatable({ type = "App", count = 0 }, App)
session:createAppVariable(app)
